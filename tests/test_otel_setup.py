"""``vmx serve``'s OpenTelemetry set-up: only with an endpoint, and only with the otel extra."""

from __future__ import annotations

import sys

import pytest
import structlog

from vmx_server import otel


def test_nothing_is_installed_without_an_endpoint() -> None:
    """No OTEL_EXPORTER_OTLP_*ENDPOINT (or OTEL_SDK_DISABLED=true): no SDK, no exporter."""
    assert otel.configure({}) is None
    assert otel.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) is None
    assert otel.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}) is None


def test_a_missing_extra_is_a_warning_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint without the otel extra installed logs how to install it and serves without telemetry."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # what an absent package looks like
    with structlog.testing.capture_logs() as logs:
        assert otel.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}) is None
    assert [e["event"] for e in logs] == ["otel_sdk_missing"]
    assert "vmx[otel]" in logs[0]["hint"]
