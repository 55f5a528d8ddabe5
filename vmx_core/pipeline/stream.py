"""Relaying a committed stream: chunk by chunk, without re-encoding, ending in-band on error.

Before the first event the stream can still fail over invisibly (``execute.run_legs``); once
the first frame is handed out, a failure or a stall becomes an in-band error in the client's
dialect (DESIGN §6), never a clean-looking truncation, never a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from vmx_core.errors import ProviderError, UpstreamFailed, UpstreamStalledError
from vmx_core.pipeline.context import RequestContext
from vmx_core.providers import UpstreamStream
from vmx_core.wire.errors import stream_error_frame
from vmx_core.wire.sse import SSEEvent
from vmx_core.wire.streams import StreamWatcher

#: A client that goes away mid-stream; recorded in audit like nginx does.
CLIENT_CLOSED = 499


async def relay(
    ctx: RequestContext,
    upstream: UpstreamStream,
    events: AsyncIterator[SSEEvent],
    held: list[bytes],
    watcher: StreamWatcher,
    idle: float,
    finish: Callable[[RequestContext], None],
) -> AsyncIterator[bytes]:
    ctx.status = CLIENT_CLOSED
    fmt = ctx.request.format
    capture = ctx.capture
    try:
        for frame in held:
            if capture is not None:
                capture.frame(frame)
            yield frame
        while not watcher.terminal:
            wait = min(idle, ctx.remaining())
            started = time.perf_counter()
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    ev = await anext(events)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise UpstreamStalledError(f"the stream stalled for {wait * 1000:.0f} ms") from None
            finally:
                ctx.timings.upstream_ms += (time.perf_counter() - started) * 1000
            if watcher.observe(ev):
                if capture is not None:
                    capture.frame(ev.raw)
                yield ev.raw
        if not watcher.terminal:
            raise ProviderError("the upstream stream ended before its final event (truncated)")
        ctx.status = 502 if watcher.failed else 200
        if watcher.failed:
            ctx.error = UpstreamFailed(f"upstream stream failed: {watcher.failed}")
    except ProviderError as exc:
        err = UpstreamFailed(f"upstream stream failed after the first byte: {exc.message}")
        ctx.status, ctx.error = 502, err
        frame = stream_error_frame(err, fmt, watcher.events)
        if capture is not None:
            capture.frame(frame)
        yield frame
    finally:
        ctx.usage = watcher.usage or ctx.usage
        # Shielded: the client may have gone away (cancellation), and the upstream
        # connection must still be released and the audit record still written.
        await asyncio.shield(upstream.aclose())
        finish(ctx)
