"""A lean Redis client for the ``redis://`` capacity store: RESP2 over one pipelined connection.

The store sends one ``EVALSHA`` per admission and one per settlement, on the request path.
redis-py spends ~50 µs of CPU on each (connection checkout, command packing, its parser, the
retry machinery); this client writes each command as it comes and matches replies to callers
in order on a single connection -- Redis answers one connection's commands in order, and runs
them one at a time anyway -- for a fraction of that (docs/performance.md).

It does what the store needs: ``AUTH``/``SELECT`` from the URL, TLS for ``rediss://``, a timeout
per call (a call that times out closes the connection, failing the calls behind it, as
redis-py does), and a new connection on the next call after any failure.  Server error replies
are :class:`RespError`; everything else that can go wrong is an ``OSError`` or
``TimeoutError``.  ``redis+cluster://`` keeps redis-py's cluster client (slot discovery,
redirections).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from vmx_core.deadline import deadline
from vmx_core.http import default_tls

#: A reply line or bulk string longer than this is not one of the store's replies.
MAX_REPLY_BYTES = 16 * 1024 * 1024


class RespError(Exception):
    """An error reply from the server (``-NOSCRIPT ...``, ``-WRONGPASS ...``)."""

    @property
    def noscript(self) -> bool:
        return str(self).startswith("NOSCRIPT")


def encode_command(args: tuple[Any, ...]) -> bytes:
    """A command as a RESP array of bulk strings (ints and floats as their decimal text)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class ReplyParser:
    """Incremental RESP2 parser: ``feed`` bytes, get the complete replies so far."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf + data if self._buf else data
        replies: list[Any] = []
        pos = 0
        while pos < len(buf):
            parsed = self._parse(buf, pos)
            if parsed is None:
                break
            reply, pos = parsed
            replies.append(reply)
        self._buf = buf[pos:]
        if len(self._buf) > MAX_REPLY_BYTES:
            raise OSError("the Redis reply exceeds the client's limit")
        return replies

    def _parse(self, buf: bytes, pos: int) -> tuple[Any, int] | None:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        kind, line, after = buf[pos : pos + 1], buf[pos + 1 : eol], eol + 2
        if kind == b":":
            return int(line), after
        if kind == b"$":
            size = int(line)
            if size < 0:
                return None, after
            if size > MAX_REPLY_BYTES:
                raise OSError("the Redis reply exceeds the client's limit")
            if len(buf) < after + size + 2:
                return None
            return buf[after : after + size], after + size + 2
        if kind == b"*":
            count = int(line)
            if count < 0:
                return None, after
            items: list[Any] = []
            for _ in range(count):
                parsed = self._parse(buf, after)
                if parsed is None:
                    return None
                item, after = parsed
                items.append(item)
            return items, after
        if kind == b"+":
            return line.decode(), after
        if kind == b"-":
            return RespError(line.decode(errors="replace")), after
        raise OSError(f"not a RESP reply: {buf[pos:pos + 20]!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = ReplyParser()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            replies = self.parser.feed(data)
        except (OSError, ValueError) as exc:
            self.fail(OSError(f"Redis sent an unreadable reply: {exc}"))
            return
        waiting = self.waiting
        for reply in replies:
            if not waiting:
                self.fail(OSError("Redis sent a reply nobody asked for"))
                return
            future = waiting.popleft()
            if future.done():  # its caller gave up (cancelled): the reply is dropped
                continue
            if isinstance(reply, RespError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def call(self, loop: asyncio.AbstractEventLoop, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Write one command; its reply (or error) arrives on the returned future."""
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append(future)
        assert self.transport is not None
        self.transport.write(encode_command(args))
        return future

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(ConnectionError(f"the Redis connection closed{f': {exc}' if exc else ''}"))

    def fail(self, exc: Exception) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    """``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS), one connection."""

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.tls = default_tls() if parts.scheme == "rediss" else None
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path = parts.path.strip("/")
        self.db = int(path) if path else 0
        self.timeout = timeout
        self._conn: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute("EVAL", script, numkeys, *keys_and_args)

    async def execute(self, *args: Any) -> Any:
        """Send one command and wait for its reply (within the timeout)."""
        loop = asyncio.get_running_loop()
        conn = self._conn
        if conn is None or conn.closed or loop is not self._loop:
            conn = await self._connection(loop)
        future = conn.call(loop, args)
        timer = loop.call_at(loop.time() + self.timeout, _expire, conn, future, self.timeout)
        try:
            return await future
        finally:
            timer.cancel()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()

    async def _connection(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        # Calls that find no connection share the one being opened.
        if self._connecting is not None and self._loop is loop:
            return await asyncio.shield(self._connecting)
        self._loop = loop
        self._conn = None
        connecting: asyncio.Future[_Protocol] = loop.create_future()
        self._connecting = connecting
        try:
            conn = await self._open(loop)
        except BaseException as exc:
            connecting.set_exception(exc if isinstance(exc, Exception) else ConnectionError("connection cancelled"))
            connecting.exception()  # retrieved: waiters see it, nobody else needs to
            raise
        finally:
            self._connecting = None
        self._conn = conn
        connecting.set_result(conn)
        return conn

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        with deadline(self.timeout):
            _transport, conn = await loop.create_connection(
                _Protocol, self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None
            )
            setup: list[tuple[Any, ...]] = []
            if self.password is not None:
                setup.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
            if self.db:
                setup.append(("SELECT", self.db))
            for command in setup:
                try:
                    await conn.call(loop, command)
                except RespError:
                    conn.fail(ConnectionError("Redis refused the connection's AUTH or SELECT"))
                    raise
        return conn


def _expire(conn: _Protocol, future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        # The reply may still come, behind others: the connection cannot be trusted to line
        # replies up with callers any more, so it goes, failing the calls behind this one.
        conn.fail(TimeoutError(f"Redis did not answer within {timeout:g} s"))
