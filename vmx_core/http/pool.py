"""A bounded pool of keep-alive connections to one upstream origin.

Idle connections are reused most-recent first (the warmest, and the least likely to have been
closed by the upstream's own idle timeout); those idle longer than ``keepalive`` seconds are
closed when met.  Past ``limit`` open connections, callers queue in order for the next one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque

from vmx_core.errors import UpstreamConnectionError, UpstreamTimeoutError
from vmx_core.http.connection import Connection


class Pool:
    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, *, limit: int, keepalive: float, connect_timeout: float
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.limit = limit
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.idle: deque[Connection] = deque()
        #: Open connections, idle or in use.
        self.total = 0
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self.closed = False

    async def acquire(self, *, fresh: bool = False, loop: asyncio.AbstractEventLoop | None = None) -> Connection:
        """A connection with no exchange on it: an idle one, a new one, or the next one freed.
        ``loop``: the running loop, when the caller has it at hand (on Python 3.11 asking for it
        is a ``getpid`` system call)."""
        if loop is None:
            loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self._rebind(loop)
        if self.closed:
            raise UpstreamConnectionError("the upstream client is closed")
        if not fresh:
            idle = self.idle
            now = loop.time()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self.keepalive:
                    return conn
                self._drop(conn)
        slot_held = False
        if self.total >= self.limit:
            waiter: asyncio.Future[Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if not waiter.done():
                    self._waiters.remove(waiter)
                elif not waiter.cancelled() and waiter.exception() is None:
                    given = waiter.result()
                    if given is not None:
                        self.release(given)
                    else:
                        self._wake_one()  # the slot it was given goes to the next in line
                raise
            if handed is not None:
                if not fresh:
                    return handed
                _close(handed)  # its slot is ours: a new connection takes it
                slot_held = True
            # handed None: a connection closed and its slot (already uncounted) is ours
        if not slot_held:
            self.total += 1
        try:
            return await self._connect(loop)
        except BaseException:
            self.total -= 1
            self._wake_one()
            raise

    def release(self, conn: Connection) -> None:
        """Back from a finished exchange: reused if it can be, closed if not."""
        if conn.closed or not conn.reusable or self.closed or conn.loop is not self.loop:
            self._drop(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        assert self.loop is not None
        conn.idle_since = now = self.loop.time()
        idle = self.idle
        while idle and now - idle[0].idle_since >= self.keepalive:
            self._drop(idle.popleft())
        idle.append(conn)

    def discard(self, conn: Connection) -> None:
        """An exchange that did not finish: its connection cannot carry another."""
        conn.abort()
        self._drop(conn)

    def close(self) -> None:
        self.closed = True
        while self.idle:
            self._drop(self.idle.pop())
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamConnectionError("the upstream client is closed"))

    def _drop(self, conn: Connection) -> None:
        _close(conn)
        if conn.loop is self.loop:
            self.total -= 1
            self._wake_one()

    def _wake_one(self) -> None:
        # A slot is free: the first waiter opens a connection of its own.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """First use, or first use on a new event loop (connections belong to their loop)."""
        for conn in self.idle:
            _close(conn)
        self.idle.clear()
        self._waiters.clear()
        self.total = 0
        self.loop = loop

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, conn = await loop.create_connection(
                    lambda: Connection(loop), self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"connecting to the upstream {self.host}:{self.port} took longer than {self.connect_timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamConnectionError(f"upstream connection failed: {type(exc).__name__}: {exc}") from None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Requests are written whole: Nagle would only delay the last segment.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn


def _close(conn: Connection) -> None:
    conn.closed = True
    # A connection of an event loop that has since closed has no transport left to close.
    if conn.transport is not None and not conn.loop.is_closed() and not conn.transport.is_closing():
        conn.transport.close()
