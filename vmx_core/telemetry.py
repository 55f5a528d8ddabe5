"""Application telemetry through ``opentelemetry-api`` only.

Without an OpenTelemetry SDK installed and configured by the host application these calls are
no-ops.  Telemetry is separate from audit: turning it off changes nothing in audit or usage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    from vmx_core.pipeline.context import RequestContext

_meter = metrics.get_meter("vmx")
_overhead = _meter.create_histogram(
    "vmx.gateway.overhead", unit="ms", description="time spent in the gateway, excluding upstream wait"
)
_stage = _meter.create_histogram("vmx.gateway.stage.duration", unit="ms", description="time per pipeline stage")
_requests = _meter.create_counter("vmx.gateway.requests", description="finished client requests")


def record_request(ctx: RequestContext) -> None:
    attrs: Attributes = {
        "vmx.format": str(ctx.request.format),
        "vmx.status": ctx.status,
        "vmx.provider": ctx.connection.provider.name if ctx.connection else "",
        "vmx.stream": ctx.stream,
    }
    _requests.add(1, attrs)
    _overhead.record(ctx.timings.overhead_ms(), attrs)
    for stage, ms in ctx.timings.stages.items():
        _stage.record(ms, {"vmx.stage": stage})
