"""One keep-alive HTTP/1.1 connection to an upstream: an asyncio protocol that carries one
exchange at a time and hands the response on as it arrives.

The response's body is buffered between reads; a streamed body that the gateway reads slower
than the upstream writes pauses the socket past ``HIGH_WATER`` bytes (TCP back-pressure to the
upstream) instead of growing without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from vmx_core.http.wire import (
    UNTIL_CLOSE,
    Head,
    HttpProtocolError,
    ResponseParser,
    decoder_for,
    keeps_alive,
)

#: Buffered body bytes past which reading from the socket pauses (it resumes once the reader
#: has taken them).
HIGH_WATER = 256 * 1024


class ConnectionClosed(Exception):
    """The upstream closed the connection (or it failed) during an exchange."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        #: Nothing of the response had arrived: on a reused connection the request is safe to
        #: send again (the upstream closed it as idle before reading the request).
        self.before_response = before_response


class Connection(asyncio.Protocol):
    """The protocol of one upstream connection.  ``send`` writes a request; ``head()``,
    ``read()`` and ``done`` follow its response."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser(self._on_head, self._on_body, self._on_done)
        self.closed = False
        #: Set when the current exchange ended with a response the connection may follow.
        self.reusable = False
        #: ``loop.time()`` when the connection went back to the pool.
        self.idle_since = 0.0
        #: Requests this connection has carried (0: a new one).
        self.used = 0
        self._head: Head | None = None
        self._head_waiter: asyncio.Future[Head] | None = None
        self._body: list[bytes] = []
        self._buffered = 0
        self._body_waiter: asyncio.Future[None] | None = None
        self._done = False
        self._error: BaseException | None = None
        self._decode: Callable[[bytes], bytes] | None = None
        self._paused = False
        self._received = False
        #: A request is written and its response not yet complete.
        self._active = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self.parser.feed(data)
        except HttpProtocolError as exc:
            self._fail(exc)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        # The upstream's EOF arrives here too (the protocol keeps no half-open connection).
        if self._active and not self._done:
            if self.parser.until_close and exc is None:
                self.parser.feed_eof()  # the end of a body framed by the close itself
                return
            reason = f": {type(exc).__name__}: {exc}" if exc else ""
            self._fail(ConnectionClosed(
                f"the upstream closed the connection before the response was complete{reason}",
                before_response=not self._received,
            ))

    # the parser's callbacks

    def _on_head(self, head: Head, kind: int) -> None:
        self._decode = decoder_for(head)  # raises for a coding we cannot read: data_received fails the exchange
        self._head = head
        self.reusable = kind != UNTIL_CLOSE and keeps_alive(head)
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(head)

    def _on_body(self, data: bytes) -> None:
        if self._decode is not None:
            try:
                data = self._decode(data)
            except Exception as exc:  # zlib.error: the body is not what its coding says
                raise HttpProtocolError(f"the response body cannot be decompressed: {exc}") from None
        if data:
            self._body.append(data)
            self._buffered += len(data)
            if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            self._wake()

    def _on_done(self) -> None:
        self._done = True
        self._active = False
        self._wake()

    # the exchange

    def send(self, method: str, head: bytes, body: bytes) -> None:
        """Write one request; the connection must be idle."""
        assert self.transport is not None and self.parser.idle
        self.used += 1
        self._head = None
        self._head_waiter = None
        self._body = []
        self._buffered = 0
        self._done = False
        self._error = None
        self._decode = None
        self._received = False
        self._active = True
        self.reusable = False
        self.parser.expect(method)
        if len(body) < 64 * 1024:
            self.transport.write(head + body)  # one segment for the usual small body
        else:
            self.transport.write(head)
            self.transport.write(body)

    async def head(self) -> Head:
        if self._head is not None:
            return self._head
        if self._error is not None:
            raise self._error
        waiter: asyncio.Future[Head] = self.loop.create_future()
        self._head_waiter = waiter
        try:
            return await waiter
        finally:
            self._head_waiter = None

    @property
    def done(self) -> bool:
        """The whole body has arrived (and may still be buffered)."""
        return self._done

    def take(self) -> bytes:
        """Everything buffered so far."""
        body = self._body
        if not body:
            return b""
        data = body[0] if len(body) == 1 else b"".join(body)
        self._body = []
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def read(self) -> bytes:
        """The next buffered piece of the body (waiting for one), ``b""`` at its end."""
        while True:
            if self._body:
                return self.take()
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            waiter = self._body_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._body_waiter = None

    async def read_all(self, limit: int) -> bytes:
        """The whole body; past ``limit`` bytes, :class:`HttpProtocolError`."""
        parts: list[bytes] = []
        size = 0
        while data := await self.read():
            size += len(data)
            if size > limit:
                raise HttpProtocolError(f"the response body exceeds {limit} bytes")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def expire(self, error: type[BaseException]) -> None:
        """The exchange's deadline passed: fail it with ``error`` and drop the connection."""
        if self._active and not self._done:
            self._fail(error())
            self.abort()

    def abort(self) -> None:
        """Drop the connection now (an exchange that will not be finished)."""
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self.reusable = False
        head_waiter = self._head_waiter
        if head_waiter is not None and not head_waiter.done():
            head_waiter.set_exception(exc)
        body_waiter = self._body_waiter
        if body_waiter is not None and not body_waiter.done():
            body_waiter.set_result(None)
