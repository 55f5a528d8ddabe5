"""The pipeline's side of conversion: building a converted upstream body for a leg, and
showing a converted stream to the relay in the client's shape, timed as stage ``conversion``.

Because the relay only ever sees the client's shape, the StreamWatcher's hold-back until the
first content, usage capture and in-band errors work the same for converted streams.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from vmx_core.config.models import ModelRef
from vmx_core.pipeline.context import RequestContext
from vmx_core.providers import UpstreamStream
from vmx_core.timing import Timings
from vmx_core.wire.convert import StreamConverter, convert_request
from vmx_core.wire.sse import SSEEvent

STAGE = "conversion"


def converted_body(ctx: RequestContext, ref: ModelRef, dst: str) -> dict[str, Any]:
    """``default_args < client body`` converted to ``dst``, then ``providerArgs`` (which are in
    the provider's own dialect) and the provider's model id.  Raises ``InvalidRequest``."""
    assert ctx.body is not None and ctx.envelope is not None
    started = time.perf_counter()
    source = {**ref.default_args, **ctx.body} if ref.default_args else ctx.body
    try:
        body = convert_request(ctx.request.format, dst, source)
    finally:
        ctx.timings.mark(STAGE, started)
    if ctx.envelope.provider_args:
        body.update(ctx.envelope.provider_args)
    body["model"] = ref.model
    return body


class ConvertedStream:
    """An upstream stream in its own shape, iterated as the client's (an ``UpstreamStream``)."""

    def __init__(self, upstream: UpstreamStream, converter: StreamConverter, timings: Timings) -> None:
        self.upstream = upstream
        self.converter = converter
        self.timings = timings
        self.headers: Mapping[str, str] = upstream.headers
        self._events = self._convert()

    def __aiter__(self) -> AsyncIterator[SSEEvent]:
        return self._events

    async def _convert(self) -> AsyncIterator[SSEEvent]:
        async for ev in self.upstream:
            started = time.perf_counter()
            out = self.converter.feed(ev)
            spent = (time.perf_counter() - started) * 1000
            self.timings.stages[STAGE] = self.timings.stages.get(STAGE, 0.0) + spent
            # The relay books its whole wait for the next event as upstream time; the part
            # spent converting is the gateway's own overhead, so it is moved back.
            self.timings.upstream_ms -= spent
            for converted in out:
                yield converted

    async def aclose(self) -> None:
        try:
            await self._events.aclose()  # type: ignore[attr-defined]
        finally:
            await self.upstream.aclose()
