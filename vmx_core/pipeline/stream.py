"""Relaying a committed stream: chunk by chunk, without re-encoding, ending in-band on error.

Before the first event the stream can still fail over invisibly (``execute.run_legs``); once
the first frame is handed out, a failure or a stall becomes an in-band error in the client's
dialect (DESIGN §6), never a clean-looking truncation, never a hang.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from vmx_core.deadline import deadline
from vmx_core.errors import ProviderError, UpstreamFailed, UpstreamStalledError
from vmx_core.pipeline.context import RequestContext
from vmx_core.pipeline.shield import shielded
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
    settle: Callable[[RequestContext], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    ctx.status = CLIENT_CLOSED
    fmt = ctx.request.format
    capture = ctx.capture
    timings = ctx.timings
    # Frames that arrived in one upstream read leave in one write: the same bytes, and one ASGI
    # message per frame costs more than the relay itself.  ``ready`` (how many parsed events
    # wait behind this one) is optional on an upstream stream; without it every frame flushes.
    # The payload capture records each frame as its write is handed out.
    batch: list[bytes] = list(held)
    # Optional too: ``take_ready()``, the rest of a read's parsed events in one call instead of
    # an ``anext`` each (a converted stream has neither).
    take_ready = getattr(upstream, "take_ready", None)
    try:
        while not watcher.terminal:
            if batch and getattr(upstream, "ready", 0) == 0:
                # Suspended at the yield while the server writes and the client reads: that
                # wait is the client's, not gateway overhead.
                if capture is not None:
                    for frame in batch:
                        capture.frame(frame)
                handed = time.perf_counter()
                out, batch = b"".join(batch), []
                yield out
                timings.downstream_ms += (time.perf_counter() - handed) * 1000
            if getattr(upstream, "ready", 0) > 0:
                # Already parsed from the last read: no wait to time out, nor to time.
                try:
                    ev = await anext(events)
                except StopAsyncIteration:
                    break
            else:
                started = time.perf_counter()
                wait = min(idle, ctx.remaining())
                try:
                    with deadline(max(wait, 0.0)):
                        ev = await anext(events)
                except TimeoutError:
                    raise UpstreamStalledError(f"the stream stalled for {wait * 1000:.0f} ms") from None
                except StopAsyncIteration:
                    break
                finally:
                    timings.upstream_ms += (time.perf_counter() - started) * 1000
            if watcher.observe(ev):
                batch.append(ev.raw)
            if take_ready is not None and not watcher.terminal:
                for ev in take_ready():  # empty when the read held no more
                    if watcher.observe(ev):
                        batch.append(ev.raw)
                    if watcher.terminal:
                        break
        if batch:
            if capture is not None:
                for frame in batch:
                    capture.frame(frame)
            out, batch = b"".join(batch), []
            yield out
        if not watcher.terminal:
            raise ProviderError("the upstream stream ended before its final event (truncated)")
        ctx.status = 502 if watcher.failed else 200
        if watcher.failed:
            ctx.error = UpstreamFailed(f"upstream stream failed: {watcher.failed}")
    except ProviderError as exc:
        err = UpstreamFailed(f"upstream stream failed after the first byte: {exc.message}")
        ctx.status, ctx.error = 502, err
        # What was relayed before the failure still goes out, then the in-band error.
        frame = stream_error_frame(err, fmt, watcher.events)
        if capture is not None:
            for pending in batch:
                capture.frame(pending)
            capture.frame(frame)
        yield b"".join([*batch, frame])
    finally:
        ctx.usage = watcher.usage or ctx.usage
        # Shielded: the client may have gone away (cancellation), and the upstream
        # connection must still be released and the audit record still written.
        await shielded(upstream.aclose())
        if settle is not None:  # capacity: reconcile the reservation to the stream's usage
            await shielded(settle(ctx))
        finish(ctx)
