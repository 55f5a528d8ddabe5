"""The OpenTelemetry SDK for ``vmx serve``: installed only when asked for.

``vmx_core`` records through ``opentelemetry-api`` alone, which is a no-op until someone
installs an SDK.  ``vmx serve`` does so when the ``otel`` extra is installed
(``pip install 'vmx[otel]'``) *and* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces- or
metrics-specific variant) is set; everything else -- headers, service name, export intervals,
``OTEL_SDK_DISABLED`` -- comes from the standard ``OTEL_*`` variables, read by the SDK itself.
An application embedding ``vmx_core`` configures its own SDK instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("vmx.server")

_ENDPOINT_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)


def configure(environ: Mapping[str, str] | None = None) -> Callable[[], None] | None:
    """Install the SDK with OTLP/HTTP exporters for traces and metrics, if asked for.

    Returns the shutdown function that flushes what is buffered (call it before exiting), or
    ``None`` when nothing was installed."""
    env = os.environ if environ is None else environ
    if not any(env.get(v) for v in _ENDPOINT_VARS) or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("otel_sdk_missing", hint="OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not "
                    "installed: pip install 'vmx[otel]'")
        return None
    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES still win: Resource.create merges them in.
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "vmx"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    meter_provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    log.info("otel_configured", exporter="otlp/http")

    def shutdown() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return shutdown
