"""RequestContext.audit_record passes the record's fields by position (issue 9): every field
must still get its own value."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace
from typing import Any

import attrs

from vmx_core.audit.record import Attempt, AuditRecord
from vmx_core.errors import UpstreamFailed
from vmx_core.ids import request_id
from vmx_core.pipeline.context import RequestContext
from vmx_core.request import ClientRequest, Envelope
from vmx_core.wire.formats import Format
from vmx_core.wire.usage import Usage


def test_every_field_of_the_record_gets_its_own_value() -> None:
    request = ClientRequest(Format.CHAT_COMPLETIONS, "ws-1", "env-1", b"{}", "key", {}, "10.0.0.9")
    rid = request_id()
    ctx = RequestContext(request, request_id=rid, timestamp=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    conn: Any = SimpleNamespace(name="conn-1", provider=SimpleNamespace(name="prov-1"))
    ctx.connection, ctx.model, ctx.key = conn, "model-1", SimpleNamespace(name="key-1")  # type: ignore[assignment]
    ctx.resource_name, ctx.resource = "res-1", object()  # type: ignore[assignment]
    ctx.stream, ctx.status, ctx.routing_rule = True, 502, "rule-1"
    ctx.error = UpstreamFailed("it broke")
    ctx.envelope = Envelope(correlation_id="corr-1", metadata={"team": "t"})
    ctx.attempts.append(Attempt("conn-1", "prov-1", "model-1", 502, "http_error", 1.5))
    ctx.usage = Usage(prompt_tokens=11, completion_tokens=22, cached_tokens=3, cache_creation_tokens=4, reasoning_tokens=5)
    ctx.timings.ttft_ms, ctx.timings.upstream_ms = 7.0, 8.0
    ctx.timings.stages.update({"gate": 9.0, "routing": 10.0, "parse": 0.5})

    record = attrs.asdict(ctx.audit_record(), recurse=False)
    duration = record.pop("duration_ms")
    assert duration >= 0
    assert record == {
        "id": uuid.UUID(rid), "timestamp": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "workspace": "ws-1",
        "environment": "env-1", "resource": "res-1", "connection": "conn-1", "provider": "prov-1",
        "model": "model-1", "api_key_id": "key-1", "format": str(Format.CHAT_COMPLETIONS), "stream": True,
        "status_code": 502, "error_code": ctx.error.openai_code, "error_message": "it broke",
        "attempts": (ctx.attempts[0],), "routing_rule": "rule-1", "correlation_id": "corr-1",
        "metadata": {"team": "t"}, "prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33,
        "cached_tokens": 3, "cache_creation_tokens": 4, "reasoning_tokens": 5, "cost": None, "ttft_ms": 7.0,
        "upstream_ms": 8.0, "gate_ms": 9.0, "routing_ms": 10.0, "source_ip": "10.0.0.9",
        "stages": {"gate": 9.0, "routing": 10.0, "parse": 0.5}, "payload": None,
    }
    assert set(record) | {"duration_ms"} == {f.name for f in attrs.fields(AuditRecord)}
