"""Application telemetry through ``opentelemetry-api`` only.

Spans: ``vmx.request`` (the client request, until its answer is complete -- for a stream, until
the stream ends) with ``vmx.routing`` and one ``vmx.leg`` per leg tried beneath it, and one
``vmx.upstream`` client span per upstream call (retries included) beneath its leg.  For a
stream the leg and upstream spans end at the first content frame: that is the window in which
the gateway can still fail over; the rest is on the request span (``vmx.ttft_ms``).

Metrics (all in milliseconds or counts) carry low-cardinality attributes only: names from the
config (workspace, environment, resource, connection, provider, model), the API shape, the
status and error code, and the ``vmx`` metadata keys listed in
``telemetry.metadata_attributes`` -- never a request id, a correlation id or free text.

Without an OpenTelemetry SDK configured (by ``vmx serve`` or by the host application) every
call here is a no-op.  Telemetry is separate from audit: turning it off changes nothing in
audit or usage.

``vmx.gateway.overhead`` is the gateway's own time (elapsed minus upstream wait, and for
streams minus the wait for the client to take each frame), recorded once per request with
``vmx.stage = total`` and once per stage that ran, so a dashboard can split it by stage.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from attrs import frozen
from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider

# Where the API keeps the global meter provider (not exported): see ``metering``.
from opentelemetry.metrics import _internal as _metrics_api
from opentelemetry.trace import (
    INVALID_SPAN,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from vmx_core.pipeline.context import RequestContext
    from vmx_core.providers import UpstreamCall
    from vmx_core.runtime import Connection

Attrs = dict[str, AttributeValue]

_SCOPE = "vmx"
#: Longest metadata value put on a metric or span (a guard, not a cardinality control).
_META_VALUE_MAX = 64
#: What every span helper returns while no tracer provider is installed: even a no-op span
#: costs ~7 µs (context attach/detach), and a request opens four.
_OFF: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)
#: Timing names (audit ``stages``) -> the stage names telemetry reports: ``gate`` is capacity
#: admission and reconciliation.
STAGE_NAMES = {"gate": "capacity"}

#: Timing names (audit ``stages``) -> the stage names telemetry reports: ``gate`` is capacity
#: admission and reconciliation.
STAGE_NAMES = {"gate": "capacity"}


@frozen
class Telemetry:
    """The tracer and instruments one gateway records through."""

    tracer: Tracer
    #: True when the tracer provider was given; else tracing follows the global provider.
    own_tracer: bool
    requests: Any
    duration: Any
    overhead: Any
    ttft: Any
    stage: Any
    tokens: Any
    errors: Any
    upstream: Any
    #: True when the meter provider was given; else metrics follow the global provider.
    own_meter: bool = False

    @classmethod
    def create(cls, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None) -> Telemetry:
        """Instruments on the given providers; by default the global ones (which stay no-ops
        until an SDK is installed, and then record without recreating anything)."""
        tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(_SCOPE)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE)
        return cls(
            tracer=tracer,
            own_tracer=tracer_provider is not None,
            own_meter=meter_provider is not None,
            requests=meter.create_counter("vmx.gateway.requests", description="finished client requests"),
            duration=meter.create_histogram(
                "vmx.gateway.request.duration", unit="ms", description="client request duration, until the answer is complete"
            ),
            overhead=meter.create_histogram(
                "vmx.gateway.overhead", unit="ms",
                description="time spent in the gateway, excluding upstream wait; attribute vmx.stage splits it",
            ),
            ttft=meter.create_histogram(
                "vmx.gateway.ttft", unit="ms", description="streams: time from the request to the first content frame"
            ),
            stage=meter.create_histogram("vmx.gateway.stage.duration", unit="ms", description="time per pipeline stage"),
            tokens=meter.create_counter("vmx.gateway.tokens", description="tokens by type (input, output, cached...)"),
            errors=meter.create_counter("vmx.gateway.errors", description="client requests answered with status >= 400"),
            upstream=meter.create_histogram(
                "vmx.gateway.upstream.duration", unit="ms", description="one upstream call (a try of a leg), by outcome"
            ),
        )

    # -- spans ---------------------------------------------------------------------------------

    @property
    def tracing(self) -> bool:
        """Whether spans are recorded: a provider was given, or an SDK installed globally."""
        # The API's module global rather than get_tracer_provider(), which reads os.environ on
        # every call (~3 µs); the global tracer is a proxy that forwards once that is set.
        return self.own_tracer or trace._TRACER_PROVIDER is not None

    @property
    def metering(self) -> bool:
        """Whether metrics are recorded: a provider was given, or an SDK installed globally.
        Until then every instrument is a proxy to a no-op, and the ~20 calls and attribute
        dicts a finished request makes are pure cost (issue 9)."""
        return self.own_meter or _metrics_api._METER_PROVIDER is not None

    def start_request(self, ctx: RequestContext) -> Span | None:
        """The request span (made current by :meth:`current`); ``None`` when not tracing.

        Whether a request is traced is decided here, once: the helpers below test ``ctx.span``
        (a ``tracing`` check costs ~1 µs, four times per request)."""
        if not self.tracing:
            return None
        req = ctx.request
        return self.tracer.start_span("vmx.request", kind=SpanKind.SERVER, attributes={
            "vmx.request_id": ctx.request_id, "vmx.workspace": req.workspace,
            "vmx.environment": req.environment, "vmx.format": str(req.format),
        })

    def current(self, span: Span | None) -> AbstractContextManager[Any]:
        """``span`` as the current span (the parent of what the pipeline opens) for a block."""
        if span is None:
            return _OFF
        return trace.use_span(span, record_exception=False, set_status_on_exception=False)

    def span(self, ctx: RequestContext, name: str) -> AbstractContextManager[Span]:
        if ctx.span is None:
            return _OFF
        return self.tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False)

    def leg(self, ctx: RequestContext, conn: Connection, model: str) -> AbstractContextManager[Span]:
        """One leg; its outcome is read from the last attempt the pipeline recorded."""
        return _OFF if ctx.span is None else self._leg(ctx, conn, model)

    def upstream_call(self, ctx: RequestContext, conn: Connection, call: UpstreamCall) -> AbstractContextManager[Span]:
        """One call to a provider (GenAI semantic conventions where they fit)."""
        return _OFF if ctx.span is None else self._upstream_call(conn, call)

    @contextmanager
    def _leg(self, ctx: RequestContext, conn: Connection, model: str) -> Iterator[Span]:
        before = len(ctx.attempts)
        with self.tracer.start_as_current_span("vmx.leg", record_exception=False, set_status_on_exception=False,
                                               attributes={"vmx.connection": conn.name, "vmx.provider": conn.provider.name,
                                                           "gen_ai.request.model": model}) as span:
            try:
                yield span
            finally:
                if len(ctx.attempts) > before:
                    last = ctx.attempts[-1]
                    span.set_attribute("vmx.leg.tries", len(ctx.attempts) - before)
                    if last.status is not None:
                        span.set_attribute("http.response.status_code", last.status)
                    if last.reason is not None:
                        span.set_attribute("error.type", last.reason)
                        span.set_status(Status(StatusCode.ERROR, last.reason))

    @contextmanager
    def _upstream_call(self, conn: Connection, call: UpstreamCall) -> Iterator[Span]:
        attrs: Attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": conn.provider.name,
                        "gen_ai.request.model": call.model, "vmx.connection": conn.name, "vmx.stream": call.stream}
        with self.tracer.start_as_current_span(f"chat {call.model}", kind=SpanKind.CLIENT, attributes=attrs,
                                               record_exception=False, set_status_on_exception=False) as span:
            try:
                yield span
            except BaseException as exc:
                reason = getattr(exc, "reason", None) or ("timeout" if isinstance(exc, TimeoutError) else type(exc).__name__)
                span.set_attribute("error.type", str(reason))
                status = getattr(exc, "status", None)
                if isinstance(status, int):
                    span.set_attribute("http.response.status_code", status)
                span.set_status(Status(StatusCode.ERROR, str(reason)))
                raise

    # -- the end of a request --------------------------------------------------------------------

    def finish(self, ctx: RequestContext) -> None:
        """Record the metrics of a finished request and end its span."""
        span = ctx.span
        metering = self.metering
        if span is None and not metering:
            return
        attrs = self._attributes(ctx)
        t = ctx.timings
        u = ctx.usage
        if metering:
            self._record(ctx, attrs)
        if span is not None:
            span.set_attributes(attrs)
            span.set_attribute("vmx.attempts", len(ctx.attempts))
            if ctx.envelope is not None and ctx.envelope.correlation_id:
                span.set_attribute("vmx.correlation_id", ctx.envelope.correlation_id)
            if ctx.routing_rule:
                span.set_attribute("vmx.routing_rule", ctx.routing_rule)
            if t.ttft_ms is not None:
                span.set_attribute("vmx.ttft_ms", t.ttft_ms)
            if u is not None:
                if u.prompt_tokens is not None:
                    span.set_attribute("gen_ai.usage.input_tokens", u.prompt_tokens)
                if u.completion_tokens is not None:
                    span.set_attribute("gen_ai.usage.output_tokens", u.completion_tokens)
            if ctx.status >= 500:  # a client's 4xx is not the gateway's failure (HTTP server semconv)
                span.set_status(Status(StatusCode.ERROR, ctx.error.message[:200] if ctx.error else str(ctx.status)))
            span.end()

    def _record(self, ctx: RequestContext, attrs: Attrs) -> None:
        t = ctx.timings
        elapsed = t.elapsed_ms()
        self.requests.add(1, attrs)
        self.duration.record(elapsed, attrs)
        self.overhead.record(t.overhead_ms(), {**attrs, "vmx.stage": "total"})
        if t.ttft_ms is not None:
            self.ttft.record(t.ttft_ms, attrs)
        if ctx.status >= 400:
            self.errors.add(1, attrs)
        for stage, ms in t.stages.items():
            name = STAGE_NAMES.get(stage, stage)
            self.overhead.record(ms, {**attrs, "vmx.stage": name})
            self.stage.record(ms, {"vmx.stage": name})
        u = ctx.usage
        if u is not None:
            fresh = (u.prompt_tokens or 0) - (u.cached_tokens or 0) - (u.cache_creation_tokens or 0)
            for kind, n in (("input", fresh), ("cached_input", u.cached_tokens), ("cache_write", u.cache_creation_tokens),
                            ("output", (u.completion_tokens or 0) - (u.reasoning_tokens or 0)),
                            ("reasoning", u.reasoning_tokens)):
                if n:
                    self.tokens.add(n, {**attrs, "vmx.token.type": kind})
        for a in ctx.attempts:
            self.upstream.record(a.duration_ms, {"vmx.connection": a.connection, "vmx.provider": a.provider,
                                                 "vmx.model": a.model, "vmx.outcome": a.reason or "ok"})

    def _attributes(self, ctx: RequestContext) -> Attrs:
        attrs: Attrs = {
            "vmx.workspace": ctx.request.workspace,
            "vmx.environment": ctx.request.environment,
            "vmx.format": str(ctx.request.format),
            "vmx.stream": ctx.stream,
            "http.response.status_code": ctx.status,
        }
        if ctx.resource is not None and ctx.resource_name:
            attrs["vmx.resource"] = ctx.resource_name
        if ctx.connection is not None:
            attrs["vmx.connection"] = ctx.connection.name
            attrs["vmx.provider"] = ctx.connection.provider.name
        if ctx.model:
            attrs["vmx.model"] = ctx.model
        if ctx.error is not None:
            attrs["error.type"] = ctx.error.openai_code
        if ctx.envelope is not None and ctx.runtime is not None:
            allowed = ctx.runtime.config.telemetry.metadata_attributes
            for key in allowed:
                value = ctx.envelope.metadata.get(key)
                if value is not None:
                    attrs[f"vmx.metadata.{key}"] = value[:_META_VALUE_MAX]
        return attrs


@functools.cache
def default_telemetry() -> Telemetry:
    """Instruments on the global providers, shared by every gateway that is not given its own."""
    return Telemetry.create()
