"""Request bodies with a size limit, and answers written straight to ASGI (the watch for a
client that goes away is in :mod:`vmx_server.disconnect`).

The completion endpoints use these on the raw ASGI interface rather than through Starlette's
``Request``/``Response``: they are the gateway's hot path, and Starlette's per-request objects,
its two-task disconnect listener around streamed responses and an ``asyncio.wait`` over two more
tasks cost more CPU than the gateway's own governance (issue 9, docs/performance.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from vmx_core.errors import RequestTooLarge

#: How much of an over-limit body of unknown length is read and dropped before the 413.
DRAIN_BYTES = 1024 * 1024

JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was ready."""


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; of a repeated header, the first (as
    Starlette's ``Headers.get``)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name not in headers:
            headers[name] = raw_value.decode("latin-1")
    return headers


async def read_body(request: Request, limit: int) -> bytes:
    """A Starlette request's body, refused with 413 past ``limit`` bytes."""
    return await read_limited(request.stream(), request.headers.get("content-length"), limit)


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body of a raw ASGI request, refused with 413 past ``limit`` bytes; raises
    :class:`ClientDisconnected` if the client leaves while sending it."""
    # A plain loop rather than ``read_limited`` over a generator: an async generator per
    # request costs its registration with the loop, and almost every body is one message.
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if not message.get("more_body", False):
                raise RequestTooLarge(f"request body exceeds the limit of {limit} bytes")
            raise await _too_large(_chunks(receive), limit)
        if chunk:
            parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_limited(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise await _too_large(chunks, limit)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _too_large(rest: AsyncIterator[bytes], limit: int) -> RequestTooLarge:
    """The 413 for a chunked body over the limit.  A client is still sending it, and one that
    sees the answer first may abort its upload and reuse the connection mid-body (aiohttp
    does), so a bounded remainder is read and dropped first; past that bound the connection
    is closed instead (``connection: close``)."""
    message = f"request body exceeds the limit of {limit} bytes"
    drained = 0
    try:
        async for chunk in rest:
            drained += len(chunk)
            if drained > DRAIN_BYTES:
                return RequestTooLarge(message, headers={"connection": "close"})
    except ClientDisconnected:
        pass
    return RequestTooLarge(message)


#: Header names as ASGI wants them (lower-case bytes), by the name the gateway gave: the same
#: couple of dozen names on every answer (the metadata echoes vary more, hence the bound).
_NAMES: dict[str, bytes] = {}
_MOST_NAMES = 4096


def _name(name: str) -> bytes:
    raw = _NAMES[name] = name.lower().encode("latin-1")
    if len(_NAMES) > _MOST_NAMES:
        _NAMES.clear()
    return raw


def response_start(status: int, headers: Mapping[str, str], content_type: str, length: int | None) -> dict[str, Any]:
    """``http.response.start``: the answer's own headers win over the defaults (as with
    Starlette's ``Response``)."""
    names = _NAMES
    raw = [(names.get(k) or _name(k), v.encode("latin-1")) for k, v in headers.items()]
    given = dict(raw)  # a C-level pass (a set comprehension is one more frame per answer)
    if length is not None and b"content-length" not in given:
        raw.append((b"content-length", str(length).encode()))
    if b"content-type" not in given:
        raw.append((b"content-type", content_type.encode()))
    return {"type": "http.response.start", "status": status, "headers": raw}


async def send_whole(send: Send, status: int, headers: Mapping[str, str], body: bytes, content_type: str = JSON) -> None:
    await send(response_start(status, headers, content_type, len(body)))
    await send({"type": "http.response.body", "body": body, "more_body": False})
