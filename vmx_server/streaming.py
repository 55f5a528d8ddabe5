"""Reading request bodies with a size limit, and running a call that a client disconnect
cancels (which closes the upstream connection, so the provider stops generating)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from starlette.requests import Request

from vmx_core.errors import RequestTooLarge

T = TypeVar("T")


#: How much of an over-limit body of unknown length is read and dropped before the 413.
DRAIN_BYTES = 1024 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise await _too_large(stream, limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _too_large(rest: AsyncIterator[bytes], limit: int) -> RequestTooLarge:
    """The 413 for a chunked body over the limit.  A client is still sending it, and one that
    sees the answer first may abort its upload and reuse the connection mid-body (aiohttp
    does), so a bounded remainder is read and dropped first; past that bound the connection
    is closed instead (``connection: close``)."""
    message = f"request body exceeds the limit of {limit} bytes"
    drained = 0
    async for chunk in rest:
        drained += len(chunk)
        if drained > DRAIN_BYTES:
            return RequestTooLarge(message, headers={"connection": "close"})
    return RequestTooLarge(message)


async def cancel_on_disconnect(request: Request, call: Awaitable[T]) -> T:
    """Await ``call``, cancelling it if the client goes away first."""
    task = asyncio.ensure_future(call)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not watcher.done():
            watcher.cancel()
    if not task.done():
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        raise ClientDisconnected
    return task.result()


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was ready."""


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
