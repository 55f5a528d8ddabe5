"""Application telemetry through ``opentelemetry-api`` only.

Without an OpenTelemetry SDK installed and configured by the host application these calls are
no-ops.  Telemetry is separate from audit: turning it off changes nothing in audit or usage.

``vmx.gateway.overhead`` is the gateway's own time (elapsed minus upstream wait, and for
streams minus the wait for the client to take each frame), recorded once per request with
``vmx.stage = total`` and once per stage that ran, so a dashboard can split it by stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import metrics

if TYPE_CHECKING:
    from vmx_core.pipeline.context import RequestContext

_meter = metrics.get_meter("vmx")
_overhead = _meter.create_histogram(
    "vmx.gateway.overhead", unit="ms",
    description="time spent in the gateway, excluding upstream wait; attribute vmx.stage splits it",
)
_requests = _meter.create_counter("vmx.gateway.requests", description="finished client requests")

#: Timing names (audit ``stages``) -> the stage names telemetry reports: ``gate`` is capacity
#: admission and reconciliation.
STAGE_NAMES = {"gate": "capacity"}


def record_request(ctx: RequestContext) -> None:
    base: dict[str, str | int | bool] = {
        "vmx.format": str(ctx.request.format),
        "vmx.status": ctx.status,
        "vmx.provider": ctx.connection.provider.name if ctx.connection else "",
        "vmx.stream": ctx.stream,
    }
    _requests.add(1, base)
    _overhead.record(ctx.timings.overhead_ms(), {**base, "vmx.stage": "total"})
    for stage, ms in ctx.timings.stages.items():
        _overhead.record(ms, {**base, "vmx.stage": STAGE_NAMES.get(stage, stage)})
