"""OpenTelemetry spans and metrics, captured with the SDK's in-memory exporters; and the
self-measured overhead: the histogram split by stage, and what a stream's overhead leaves out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from vmx_core import Gateway
from vmx_core.audit.query import AuditQuery
from vmx_core.audit.record import AuditRecord
from vmx_core.audit.store import open_store
from vmx_core.config.models import TelemetryConfig
from vmx_core.errors import UpstreamHTTPError
from vmx_core.telemetry import Telemetry
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway

BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}],
        "vmx": {"metadata": {"team": "search", "user": "u-123"}}}


class Capture:
    """An SDK tracer and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.telemetry = Telemetry.create(tp, MeterProvider(metric_readers=[self.reader]))

    def finished(self) -> dict[str, list[ReadableSpan]]:
        out: dict[str, list[ReadableSpan]] = {}
        for s in self.spans.get_finished_spans():
            out.setdefault(s.name, []).append(s)
        return out

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == name
                for p in m.data.data_points]


@pytest.fixture
def capture() -> Iterator[Capture]:
    yield Capture()


def _gateway(capture: Capture, fake: FakeProvider, **kw: Any) -> Gateway:
    gw = make_test_gateway(fake, fallback=True, **kw)
    gw.telemetry = capture.telemetry
    return gw


async def test_spans_nest_request_routing_legs_and_upstream_calls(capture: Capture) -> None:
    """A request that fails over leaves request -> routing, and request -> leg -> upstream call per leg."""
    fake = FakeProvider()
    fake.queue_error(UpstreamHTTPError(503, "down"))
    async with _gateway(capture, fake) as gw:
        await gw.chat_completions("test", "test", BODY, api_key=TEST_KEY)
    spans = capture.finished()
    [request] = spans["vmx.request"]
    [routing] = spans["vmx.routing"]
    legs = sorted(spans["vmx.leg"], key=lambda s: s.start_time or 0)
    calls = {s.name: s for s in spans["chat fake-1"] + spans["chat fake-2"]}
    assert request.kind is SpanKind.SERVER and request.parent is None
    assert routing.parent is not None and routing.parent.span_id == request.context.span_id
    assert [leg.parent.span_id for leg in legs if leg.parent] == [request.context.span_id] * 2
    assert calls["chat fake-1"].parent.span_id == legs[0].context.span_id  # type: ignore[union-attr]
    assert calls["chat fake-2"].parent.span_id == legs[1].context.span_id  # type: ignore[union-attr]
    assert calls["chat fake-1"].kind is SpanKind.CLIENT and calls["chat fake-1"].status.status_code is StatusCode.ERROR
    assert calls["chat fake-1"].attributes["http.response.status_code"] == 503  # type: ignore[index]
    assert legs[0].attributes["error.type"] == "http_error" and legs[0].status.status_code is StatusCode.ERROR  # type: ignore[index]
    assert legs[1].status.status_code is StatusCode.UNSET
    attrs = request.attributes or {}
    assert attrs["vmx.resource"] == "chat" and attrs["vmx.model"] == "fake-2" and attrs["vmx.attempts"] == 2
    assert attrs["http.response.status_code"] == 200 and attrs["gen_ai.usage.output_tokens"] == 2
    assert all(s.context.trace_id == request.context.trace_id for s in capture.spans.get_finished_spans())


async def test_metrics_carry_duration_overhead_tokens_and_errors(capture: Capture) -> None:
    """Requests, duration, overhead, tokens by type and errors are recorded with their attributes."""
    fake = FakeProvider()
    async with _gateway(capture, fake) as gw:
        await gw.chat_completions("test", "test", BODY, api_key=TEST_KEY)
        fake.queue_error(UpstreamHTTPError(500, "a"), UpstreamHTTPError(500, "b"))
        with pytest.raises(Exception, match="all upstream attempts failed"):
            await gw.chat_completions("test", "test", BODY, api_key=TEST_KEY)
    [ok, failed] = sorted(capture.points("vmx.gateway.requests"), key=lambda p: p.attributes["http.response.status_code"])
    assert ok.value == 1 and failed.value == 1 and failed.attributes["http.response.status_code"] == 502
    assert ok.attributes["vmx.resource"] == "chat" and ok.attributes["vmx.provider"] == "fake"
    [err] = capture.points("vmx.gateway.errors")
    assert err.value == 1 and err.attributes["error.type"] == "upstream_error"
    durations = capture.points("vmx.gateway.request.duration")
    assert sum(p.count for p in durations) == 2 and all(p.sum > 0 for p in durations)
    assert sum(p.count for p in capture.points("vmx.gateway.overhead") if p.attributes["vmx.stage"] == "total") == 2
    tokens = {p.attributes["vmx.token.type"]: p.value for p in capture.points("vmx.gateway.tokens")}
    assert tokens == {"input": 1, "output": 2}
    outcomes: dict[str, int] = {}
    for p in capture.points("vmx.gateway.upstream.duration"):
        outcomes[p.attributes["vmx.outcome"]] = outcomes.get(p.attributes["vmx.outcome"], 0) + p.count
    assert outcomes == {"ok": 1, "http_error": 2}


async def test_only_allow_listed_metadata_becomes_an_attribute(capture: Capture) -> None:
    """``telemetry.metadata_attributes`` picks the metadata keys on metrics and spans; others never appear."""
    gw = _gateway(capture, FakeProvider())
    gw.config = attrs.evolve(gw.config, telemetry=TelemetryConfig(metadata_attributes=["team"]))
    async with gw:
        await gw.chat_completions("test", "test", BODY, api_key=TEST_KEY)
    [point] = capture.points("vmx.gateway.requests")
    assert point.attributes["vmx.metadata.team"] == "search"
    assert not any("user" in k or "u-123" == v for k, v in point.attributes.items())
    [request] = capture.finished()["vmx.request"]
    assert (request.attributes or {})["vmx.metadata.team"] == "search" and "vmx.metadata.user" not in (request.attributes or {})


async def test_a_stream_records_ttft_and_ends_its_span_when_the_stream_ends(capture: Capture) -> None:
    """The request span of a stream stays open until the stream is consumed; TTFT is recorded."""
    async with _gateway(capture, FakeProvider()) as gw:
        stream = gw.stream_chat_completions("test", "test", BODY, api_key=TEST_KEY)
        await anext(stream)
        assert "vmx.request" not in capture.finished()
        assert "chat fake-1" in capture.finished()  # the upstream call span ends at the first content
        async for _ in stream:
            pass
    [request] = capture.finished()["vmx.request"]
    assert (request.attributes or {})["vmx.stream"] is True and (request.attributes or {})["vmx.ttft_ms"] > 0
    [ttft] = capture.points("vmx.gateway.ttft")
    assert ttft.count == 1


async def test_with_otel_off_spans_are_skipped_and_audit_rows_still_written(tmp_path: Path) -> None:
    """No SDK installed: telemetry records nothing, and every request still has its audit row."""
    uri = f"sqlite:///{tmp_path}/a.db"
    async with make_test_gateway(FakeProvider(), audit=uri) as gw:
        assert gw.telemetry.tracing is False
        for _ in range(3):
            await gw.chat_completions("test", "test", BODY, api_key=TEST_KEY)
        async for _ in gw.stream_chat_completions("test", "test", BODY, api_key=TEST_KEY):
            pass
    store = open_store(uri)
    await store.connect()
    rows = await store.fetch(AuditQuery("test", "test"))
    await store.aclose()
    assert len(rows) == 4 and {r["status_code"] for r in rows} == {200}


# -- the self-measured overhead, split by stage -----------------------------------------------

OVERHEAD_BODY = {"model": "chat", "messages": [{"role": "user", "content": "one two three"}]}


class Recorder:
    def __init__(self) -> None:
        self.points: list[tuple[float, dict[str, Any]]] = []

    def record(self, value: float, attributes: dict[str, Any]) -> None:
        self.points.append((value, dict(attributes)))

    def stage(self, name: str) -> list[float]:
        return [v for v, a in self.points if a.get("vmx.stage") == name]


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def enqueue(self, record: AuditRecord) -> None:
        self.records.append(record)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _recording(recorder: Recorder, fake: FakeProvider) -> Gateway:
    """A test gateway whose ``vmx.gateway.overhead`` histogram is ``recorder``."""
    gw = make_test_gateway(fake)
    gw.telemetry = attrs.evolve(Telemetry.create(), overhead=recorder, own_meter=True)
    return gw


async def test_overhead_histogram_is_split_by_stage(recorder: Recorder) -> None:
    """One request records its total overhead and each stage under vmx.stage, including the
    upstream body's construction (conversion) and the audit hand-off."""
    async with _recording(recorder, FakeProvider()) as gw:
        gw.sinks.append(ListSink())  # type: ignore[arg-type]
        await gw.chat_completions("test", "test", OVERHEAD_BODY, api_key=TEST_KEY)
    for stage in ("total", "auth", "parse", "resolve", "routing", "conversion", "respond", "audit_enqueue"):
        assert len(recorder.stage(stage)) == 1, stage
    (total,) = recorder.stage("total")
    assert total >= 0
    assert all(a["vmx.format"] == "chat-completions" and a["http.response.status_code"] == 200 for _, a in recorder.points)


async def test_capacity_is_reported_as_capacity(recorder: Recorder) -> None:
    """The internal ``gate`` timing is reported as the ``capacity`` stage."""
    async with _recording(recorder, FakeProvider()) as gw:
        await gw.chat_completions("test", "test", OVERHEAD_BODY, api_key=TEST_KEY)
    assert len(recorder.stage("capacity")) == 1
    assert recorder.stage("gate") == []


async def test_stream_overhead_leaves_out_the_clients_reading_time(recorder: Recorder) -> None:
    """A client that takes its time between frames is not counted as gateway overhead."""
    pause = 0.05
    async with _recording(recorder, FakeProvider()) as gw:
        sink = ListSink()
        gw.sinks.append(sink)  # type: ignore[arg-type]
        frames = 0
        async for _ in gw.stream_chat_completions("test", "test", OVERHEAD_BODY, api_key=TEST_KEY):
            frames += 1
            await asyncio.sleep(pause)
    (record,) = sink.records
    (total,) = recorder.stage("total")
    assert frames >= 2
    slept_ms = frames * pause * 1000
    assert record.duration_ms >= slept_ms
    assert total <= record.duration_ms - slept_ms * 0.9


def test_metrics_are_recorded_only_when_a_meter_provider_collects(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no SDK installed the instruments are no-ops and finish() skips them; a given
    meter provider turns recording on, and so does one installed globally later."""
    from opentelemetry.metrics import _internal as metrics_api

    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", None)
    telemetry = Telemetry.create()
    assert telemetry.metering is False
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", MeterProvider())
    assert telemetry.metering is True
    assert Telemetry.create(meter_provider=MeterProvider()).metering is True
