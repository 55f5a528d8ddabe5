"""``vmx serve`` exports spans over OTLP/HTTP when asked to, and audits the same either way."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import KEY
from tests.e2e.conftest import e2e_config
from tests.fakes.loopback import LoopbackServer
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess


class FakeCollector(LoopbackServer):
    """An OTLP/HTTP receiver on a loopback port: keeps every exported span and metric name."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.metric_names: set[str] = set()

    async def _traces(self, request: web.Request) -> web.Response:
        msg = ExportTraceServiceRequest.FromString(await request.read())
        self.spans += [s for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def _metrics(self, request: web.Request) -> web.Response:
        msg = ExportMetricsServiceRequest.FromString(await request.read())
        self.metric_names |= {m.name for rm in msg.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        return web.Response(body=b"", content_type="application/x-protobuf")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)


@pytest.fixture
async def collector() -> AsyncIterator[FakeCollector]:
    c = FakeCollector()
    await c.start()
    yield c
    await c.stop()


async def _three_requests(proc: VmxProcess) -> None:
    client = openai.AsyncOpenAI(base_url=proc.base_url(), api_key=KEY, max_retries=0)
    msgs = [{"role": "user", "content": "ping"}]
    await client.chat.completions.create(model="chat", messages=msgs)  # type: ignore[arg-type]
    stream = await client.chat.completions.create(model="chat", messages=msgs, stream=True)  # type: ignore[arg-type]
    async for _ in stream:
        pass
    await client.responses.create(model="chat", input="ping")
    await client.close()


def _rows(proc: VmxProcess) -> list[tuple[Any, ...]]:
    with sqlite3.connect(proc.config_path.parent / "vmx-audit.db") as conn:
        return conn.execute("SELECT format, stream, status_code FROM request_audit ORDER BY timestamp").fetchall()


async def test_serve_exports_spans_when_configured_and_audits_the_same_when_not(
    upstream: FakeOpenAI, collector: FakeCollector, vmx_factory: Any
) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT the spans reach the collector; without it, none do, and both audit every request."""
    on: VmxProcess = await vmx_factory(e2e_config(upstream), {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}"})
    off: VmxProcess = await vmx_factory(e2e_config(upstream), {"OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    await _three_requests(on)
    await _three_requests(off)
    assert await on.stop() == 0  # shutdown flushes the batched spans and the last metrics
    assert await off.stop() == 0
    names = [s.name for s in collector.spans]
    assert names.count("vmx.request") == 3 and names.count("vmx.routing") == 3 and names.count("vmx.leg") == 3
    assert names.count("chat gpt-4o-mini") == 3
    by_id = {s.span_id: s for s in collector.spans}
    call = next(s for s in collector.spans if s.name == "chat gpt-4o-mini")
    leg = by_id[call.parent_span_id]
    assert leg.name == "vmx.leg" and by_id[leg.parent_span_id].name == "vmx.request"
    assert {"vmx.gateway.requests", "vmx.gateway.request.duration", "vmx.gateway.tokens"} <= collector.metric_names
    expected = [("chat-completions", 0, 200), ("chat-completions", 1, 200), ("responses", 0, 200)]
    assert _rows(on) == expected and _rows(off) == expected
    assert "otel_configured" in on.output() and "otel_configured" not in off.output()
