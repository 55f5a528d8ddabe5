"""The upstream HTTP client: requests to one base URL over a pool of keep-alive connections.

Every failure is raised as the vmx error tree (``UpstreamConnectionError``,
``UpstreamTimeoutError``, ``UpstreamProtocolError``), never as a socket or parser exception.
A request that meets a reused connection the upstream had just closed as idle -- nothing of a
response arrived -- is sent once more on a new connection: the upstream never read it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

from vmx_core.errors import UpstreamConnectionError, UpstreamProtocolError, UpstreamTimeoutError
from vmx_core.http.connection import Connection, ConnectionClosed
from vmx_core.http.pool import Pool
from vmx_core.http.wire import Head, HttpProtocolError, header_block, request_line

#: A whole (non-streamed) answer larger than this is refused rather than buffered.
MAX_BODY = 64 * 1024 * 1024
#: Sent unless the caller sets its own: what aiohttp sent before it (brotli aside).
DEFAULT_HEADERS = {"accept-encoding": "gzip, deflate", "user-agent": "vmx"}

_TLS: ssl.SSLContext | None = None


def default_tls() -> ssl.SSLContext:
    """The system's trust store with certificate and host checks; built once, because loading
    the CA bundle takes milliseconds."""
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    return _TLS


class HttpTimeout(Exception):
    """The request's own timeout passed (raised inside the exchange, wrapped by the client)."""


class Response:
    """An upstream response: ``body`` when read whole; for a stream, iterate it for the body's
    pieces as they arrive, then ``release()`` (read to the end) or ``close()`` (abandon)."""

    __slots__ = ("_conn", "_pool", "body", "headers", "reason", "status")

    def __init__(self, head: Head, body: bytes, conn: Connection | None = None, pool: Pool | None = None) -> None:
        self.status = head.status
        self.reason = head.reason
        self.headers = head.headers
        self.body = body
        self._conn = conn
        self._pool = pool

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            if self.body:
                yield self.body
            return
        while True:
            try:
                data = await conn.read()
            except ConnectionClosed as exc:
                raise UpstreamConnectionError(f"upstream connection lost mid-stream: {exc}") from None
            except HttpProtocolError as exc:
                raise UpstreamProtocolError(f"the upstream's stream is not valid HTTP: {exc}") from None
            if not data:
                return
            yield data

    async def read(self, limit: int = MAX_BODY) -> bytes:
        """The rest of a streamed body, at most ``limit`` bytes (the connection is closed if
        more would follow); the body itself for a whole response."""
        conn = self._conn
        if conn is None:
            return self.body[:limit]
        parts: list[bytes] = []
        size = 0
        async for data in self:
            parts.append(data)
            size += len(data)
            if size >= limit:
                break
        return b"".join(parts)[:limit]

    def release(self) -> None:
        """Done with the response: its connection goes back to the pool if the body was read
        to its end, and is closed otherwise."""
        conn, pool = self._conn, self._pool
        self._conn = None
        if conn is None or pool is None:
            return
        if conn.done:
            conn.take()  # received in full: what was left unread does not matter to the socket
            pool.release(conn)
        else:
            pool.discard(conn)

    def close(self) -> None:
        """Abandon the response: closing the connection tells the upstream to stop."""
        conn, pool = self._conn, self._pool
        self._conn = None
        if conn is not None and pool is not None:
            pool.discard(conn)


class Client:
    """Requests to one upstream base URL (``https://api.openai.com/v1``): pooled keep-alive
    connections, default headers validated once, no per-request URL parsing."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        *,
        max_connections: int = 100,
        keepalive: float = 60.0,
        connect_timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"a base URL cannot have a query or a fragment: {base_url!r}")
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        self.base_url = base_url.rstrip("/")
        self.host_header = shown if port == (443 if secure else 80) else f"{shown}:{port}"
        self.base_path = parts.path
        self.headers = {**DEFAULT_HEADERS, **{k.lower(): v for k, v in (headers or {}).items()}}
        # Validated and encoded once: per request only the caller's own headers are.
        self._defaults = header_block(self.headers)
        self.pool = Pool(
            host, port, (tls or default_tls()) if secure else None,
            limit=max_connections, keepalive=keepalive, connect_timeout=connect_timeout,
        )

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        stream: bool = False,
        max_body: int = MAX_BODY,
    ) -> Response:
        """Send ``method base_path+path`` (``path`` is sent as given: already URL-encoded).

        Whole (``stream=False``): the response with its body, within ``timeout`` seconds.
        Streamed: the response once its head arrived (within ``timeout``), body unread."""
        try:
            head = request_line(method, self.base_path + path, self.host_header, len(body))
            if not headers:
                head += self._defaults + b"\r\n"
            else:
                extra = {k.lower(): v for k, v in headers.items()}
                if extra.keys() & self.headers.keys():
                    head += header_block({**self.headers, **extra}) + b"\r\n"  # the caller's win
                else:
                    head += self._defaults + header_block(extra) + b"\r\n"
        except HttpProtocolError as exc:
            raise UpstreamProtocolError(str(exc)) from None
        pool = self.pool
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        for attempt in (0, 1):
            conn = await pool.acquire(fresh=attempt > 0, loop=loop)
            reused = conn.used > 0
            timer = loop.call_at(deadline, conn.expire, HttpTimeout) if deadline is not None else None
            try:
                conn.send(method, head, body)
                response_head = await conn.head()
                data = b"" if stream else await conn.read_all(max_body)
            except ConnectionClosed as exc:
                pool.discard(conn)
                if reused and exc.before_response and attempt == 0:
                    continue
                raise UpstreamConnectionError(f"upstream connection failed: {exc}") from None
            except HttpProtocolError as exc:
                pool.discard(conn)
                raise UpstreamProtocolError(f"the upstream's answer is not valid HTTP: {exc}") from None
            except HttpTimeout:
                pool.discard(conn)
                raise UpstreamTimeoutError(f"upstream timed out after {timeout:g} s") from None
            except BaseException:
                # Cancelled (the client left, the leg's deadline): an exchange cut short
                # leaves the connection unusable, and closing it stops the upstream's work.
                pool.discard(conn)
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if stream:
                return Response(response_head, b"", conn, pool)
            pool.release(conn)
            return Response(response_head, data)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        self.pool.close()


async def fetch(url: str, *, timeout: float, max_body: int = MAX_BODY) -> Response:
    """One ``GET url`` on a connection of its own (occasional calls: a JWKS document, say)."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        client = Client(base, max_connections=1)
    except ValueError as exc:
        raise UpstreamConnectionError(str(exc)) from None
    try:
        return await client.request("GET", target, timeout=timeout, max_body=max_body)
    finally:
        await client.aclose()
