"""The request line's shortcut through structlog (vmx_core.request_log) writes exactly the line
``log.info("request", **fields)`` writes, under vmx_server's configuration and others."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from vmx_core import request_log
from vmx_server import logging as vmx_logging

FIELDS: dict[str, Any] = {
    "request_id": "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000", "workspace": "acme", "environment": "prod",
    "format": "chat_completions", "resource": "chat", "api_key": "app", "status": 200, "error_code": None,
    "stream": False, "duration_ms": 1.234, "ttft_ms": None, "stages_ms": {"auth": 0.01, "parse": 0.02},
}


@pytest.fixture
def stdout(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]) -> Iterator[Output]:
    # A fresh proxy: the module's own may have cached a logger of an earlier configuration.
    monkeypatch.setattr(request_log, "log", structlog.get_logger("vmx.request"))
    yield Output(capsysbinary)
    structlog.reset_defaults()
    for handler in logging.root.handlers[:]:
        logging.root.removeHandler(handler)


class Output:
    """What the test wrote to stdout (vmx_server logs there), as JSON lines."""

    def __init__(self, capture: pytest.CaptureFixture[bytes]) -> None:
        self.capture = capture

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.capture.readouterr().out.splitlines()]


def test_same_line_as_structlog_info_under_the_servers_configuration(stdout: Output) -> None:
    vmx_logging.configure("info")
    assert type(request_log.log.bind()) in request_log._FILTERING  # the shortcut is taken
    structlog.contextvars.bind_contextvars(tenant_hint="t1")
    try:
        request_log.log_request(lambda: dict(FIELDS))
        structlog.get_logger("vmx.request").info("request", **FIELDS)
    finally:
        structlog.contextvars.clear_contextvars()
    fast, plain = stdout.lines()
    assert fast.pop("timestamp") and plain.pop("timestamp")
    assert list(fast.items()) == list(plain.items())  # same keys, same order, same values
    assert fast["event"] == "request" and fast["level"] == "info" and fast["tenant_hint"] == "t1"


def test_filtered_out_builds_no_fields(stdout: Output) -> None:
    vmx_logging.configure("warning")

    def fields() -> dict[str, Any]:
        raise AssertionError("fields built for a line nobody logs")

    request_log.log_request(fields)
    assert stdout.lines() == []


def test_a_dropped_event_is_dropped(stdout: Output) -> None:
    def drop(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        raise structlog.DropEvent

    structlog.configure(processors=[drop], logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer))
    request_log.log_request(lambda: dict(FIELDS))
    assert stdout.lines() == []


def test_another_wrapper_class_gets_its_own_info_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_log, "log", structlog.get_logger("vmx.request"))
    with structlog.testing.capture_logs() as captured:
        structlog.configure(wrapper_class=structlog.BoundLogger)
        try:
            request_log.log_request(lambda: dict(FIELDS))
        finally:
            structlog.reset_defaults()
    assert captured == [{**FIELDS, "event": "request", "log_level": "info"}]


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**6 - 1))
def test_utc_stamper_writes_structlogs_iso_utc_text(micros: int) -> None:
    """At any instant (to the microsecond, whole seconds included) the cached stamper writes the
    text structlog's TimeStamper(fmt="iso", utc=True) writes for it."""
    stamper = vmx_logging.UtcTimeStamper()
    at = dt.datetime.fromtimestamp(0, dt.UTC) + dt.timedelta(microseconds=micros)
    with mock.patch("time.time_ns", return_value=micros * 1000):
        stamper(None, "info", {})  # fills the per-second cache
        ours = stamper(None, "info", {})["timestamp"]
    theirs = at.isoformat().replace("+00:00", "Z")  # what structlog's stamper_iso_utc writes
    assert ours == theirs


def test_utc_stamper_is_the_servers_and_is_close_to_now(stdout: Output) -> None:
    """vmx_server's configuration stamps with it, and the stamp is the current time."""
    vmx_logging.configure("info")
    processors = structlog.get_config()["processors"]
    assert any(isinstance(p, vmx_logging.UtcTimeStamper) for p in processors)
    request_log.log_request(lambda: dict(FIELDS))
    (line,) = stdout.lines()
    when = dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - when).total_seconds()) < 5


class _File:
    """A binary file that records each write and flush."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.flushes = 0

    def write(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data)

    def flush(self) -> None:
        self.flushes += 1


def test_lines_of_one_loop_turn_leave_in_one_write_in_order() -> None:
    """Lines logged in one turn of the event loop are written once, together and in order, when
    the turn ends; outside a loop a line is written at once."""
    file = _File()
    writer = vmx_logging.LineWriter(file)  # type: ignore[arg-type]
    writer.msg(b"outside")
    assert file.writes == [b"outside\n"]

    async def turn() -> None:
        for i in range(3):
            writer.info(b"line %d" % i)
        assert file.writes == [b"outside\n"]  # nothing yet: the turn is not over
        await asyncio.sleep(0)

    asyncio.run(turn())
    assert file.writes == [b"outside\n", b"line 0\nline 1\nline 2\n"]
    assert file.flushes == 2


def test_a_loop_closed_before_its_flush_strands_no_line() -> None:
    """A line whose loop stopped before the flush ran goes out with the next line logged."""
    file = _File()
    writer = vmx_logging.LineWriter(file)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()

    def log_and_stop() -> None:
        writer.msg(b"first")
        loop.stop()  # the flush it scheduled is left for a turn that never comes

    loop.call_soon(log_and_stop)
    loop.run_forever()
    loop.close()
    assert file.writes == []

    async def next_line() -> None:
        writer.msg(b"second")

    asyncio.run(next_line())
    assert file.writes == [b"first\nsecond\n"]
