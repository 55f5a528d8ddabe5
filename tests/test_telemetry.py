"""The self-measured overhead: the OpenTelemetry histogram split by stage, and what a
stream's overhead leaves out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vmx_core import telemetry
from vmx_core.audit.record import AuditRecord
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway

BODY = {"model": "chat", "messages": [{"role": "user", "content": "one two three"}]}


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
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(telemetry, "_overhead", rec)
    return rec


async def test_overhead_histogram_is_split_by_stage(recorder: Recorder) -> None:
    """One request records its total overhead and each stage under vmx.stage, including the
    upstream body's construction (conversion) and the audit hand-off."""
    async with make_test_gateway(FakeProvider()) as gw:
        gw.sinks.append(ListSink())  # type: ignore[arg-type]
        await gw.chat_completions("test", "test", BODY, api_key=TEST_KEY)
    for stage in ("total", "auth", "parse", "resolve", "routing", "conversion", "respond", "audit_enqueue"):
        assert len(recorder.stage(stage)) == 1, stage
    (total,) = recorder.stage("total")
    assert total >= 0
    assert all(a["vmx.format"] == "chat-completions" and a["vmx.status"] == 200 for _, a in recorder.points)


async def test_capacity_is_reported_as_capacity(recorder: Recorder) -> None:
    """The internal ``gate`` timing is reported as the ``capacity`` stage."""
    async with make_test_gateway(FakeProvider()) as gw:
        await gw.chat_completions("test", "test", BODY, api_key=TEST_KEY)
    assert len(recorder.stage("capacity")) == 1
    assert recorder.stage("gate") == []


async def test_stream_overhead_leaves_out_the_clients_reading_time(recorder: Recorder) -> None:
    """A client that takes its time between frames is not counted as gateway overhead."""
    pause = 0.05
    async with make_test_gateway(FakeProvider()) as gw:
        sink = ListSink()
        gw.sinks.append(sink)  # type: ignore[arg-type]
        frames = 0
        async for _ in gw.stream_chat_completions("test", "test", BODY, api_key=TEST_KEY):
            frames += 1
            await asyncio.sleep(pause)
    (record,) = sink.records
    (total,) = recorder.stage("total")
    assert frames >= 2
    slept_ms = frames * pause * 1000
    assert record.duration_ms >= slept_ms
    assert total <= record.duration_ms - slept_ms * 0.9
