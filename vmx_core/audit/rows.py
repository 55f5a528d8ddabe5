"""An audit record as a *row*: the plain, JSON-serialisable dict that the queue batches, the
spool writes as one line and every store inserts.  One shape for all of them means a row
replayed from the spool is byte-for-byte the row that would have been written directly."""

from __future__ import annotations

import datetime as dt
import json
import operator
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from vmx_core.audit.record import AuditRecord
from vmx_core.audit.rounding import round_to

Row = dict[str, Any]

#: The ``request_audit`` columns (DESIGN §11), in table order.
COLUMNS: tuple[str, ...] = (
    "id", "timestamp", "workspace", "environment", "resource", "connection", "provider", "model",
    "api_key_id", "format", "stream", "status_code", "error_code", "error_message", "attempts",
    "routing_rule", "correlation_id", "metadata", "prompt_tokens", "completion_tokens",
    "total_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens", "cost",
    "duration_ms", "ttft_ms", "upstream_ms", "gate_ms", "routing_ms", "source_ip",
)

#: Columns stored as JSON (jsonb on Postgres, TEXT holding JSON on SQLite).
JSON_COLUMNS = frozenset({"attempts", "metadata"})

#: The payload columns of ``request_audit_payload``, keyed by the audit row's id.
PAYLOAD_COLUMNS: tuple[str, ...] = ("id", "timestamp", "client_body", "upstream_body", "response_body")
#: A row's bodies travel with it (through the queue and the spool) under this key, already
#: redacted: ``{"client_body": ..., "upstream_body": ..., "response_body": ...}``.
PAYLOAD_KEY = "payload"


def payload_rows(rows: Sequence[Row]) -> list[Row]:
    """The ``request_audit_payload`` rows of ``rows`` (those that carry bodies)."""
    out = []
    for r in rows:
        p = r.get(PAYLOAD_KEY)
        if p:
            out.append({"id": r["id"], "timestamp": r["timestamp"], **p})
    return out


def strip_nul(value: Any) -> Any:
    """``value`` without NUL characters in any string.  Postgres text and jsonb refuse NUL, and
    a refused row would fail every batch it is in, forever; both stores drop it alike."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value


def iso(ts: dt.datetime) -> str:
    """UTC, microseconds, fixed width: sorts as text in the same order as in time."""
    # A request's own time (UTC, microseconds not zero) as orjson writes it, in a fifth of
    # isoformat's time; orjson leaves out zero microseconds and refuses datetime subclasses.
    if ts.tzinfo is dt.UTC and ts.microsecond:
        try:
            return orjson.dumps(ts, option=orjson.OPT_UTC_Z)[1:-1].decode()
        except orjson.JSONEncodeError:
            pass
    # isoformat is a third cheaper than strftime; in UTC it always ends in "+00:00".
    return ts.astimezone(dt.UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def uuid_text(value: uuid.UUID) -> str:
    """``str(value)``, by orjson in a quarter of the time; it refuses UUID subclasses."""
    if type(value) is uuid.UUID:
        return orjson.dumps(value)[1:-1].decode()
    return str(value)


def parse_iso(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def nul_safe(value: Any) -> Any:
    """``value`` with every NUL character (in strings, keys and nested values) replaced by
    U+FFFD.  PostgreSQL text and jsonb cannot hold NUL, so one row carrying it (an anonymous
    request to ``/v1/completion/a%00b/...``) would fail the whole batch and every later replay
    of it: every tenant's rows would stop reaching the database.  Replaced, not dropped, so a
    name holding a NUL never turns into another tenant's name."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {nul_safe(k): nul_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nul_safe(v) for v in value]
    return value


def to_row(record: AuditRecord, cost: float | None = None) -> Row:
    """The row for ``record``; ``cost`` is priced by the sink, off the request path.  Every
    string is :func:`nul_safe`, so SQLite and Postgres store the same row."""
    row: Row = {
        "id": uuid_text(record.id),
        "timestamp": iso(record.timestamp),
        "workspace": record.workspace,
        "environment": record.environment,
        "resource": record.resource,
        "connection": record.connection,
        "provider": record.provider,
        "model": record.model,
        "api_key_id": record.api_key_id,
        "format": record.format,
        "stream": record.stream,
        "status_code": record.status_code,
        "error_code": record.error_code,
        "error_message": record.error_message,
        "attempts": [a.as_dict() for a in record.attempts],
        "routing_rule": record.routing_rule,
        "correlation_id": record.correlation_id,
        "metadata": dict(record.metadata),
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
        "cached_tokens": record.cached_tokens,
        "cache_creation_tokens": record.cache_creation_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cost": cost if cost is not None else record.cost,
        "duration_ms": round_to(record.duration_ms, 3),
        "ttft_ms": round_to(record.ttft_ms, 3) if record.ttft_ms is not None else None,
        "upstream_ms": round_to(record.upstream_ms, 3),
        "gate_ms": round_to(record.gate_ms, 3),
        "routing_ms": round_to(record.routing_ms, 3),
        "source_ip": record.source_ip,
    }
    if may_hold_nul(row):
        return {k: nul_safe(v) for k, v in row.items()}
    return row


def may_hold_nul(value: Any) -> bool:
    """Whether a NUL may be in ``value``'s strings, keys or nested values.  One C-speed pass
    instead of a Python call per value: JSON escapes NUL as ``\\u0000``, so its absence from
    the encoding proves there is none.  The literal text ``\\u0000`` is a false positive, and
    harmless: the caller's replacement then finds nothing to replace.  Without
    ``OPT_NON_STR_KEYS``, which costs half as much again on every call: a key that is not a
    string (never in a row vmx builds) takes the slow way instead."""
    try:
        encoded = orjson.dumps(value, default=str)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: scan the slow way
        return True
    # Most rows escape nothing: one memchr for the backslash then spares the search for the
    # whole escape, which costs three times as much among the digits of ids and times.
    return b"\\" in encoded and b"\\u0000" in encoded


def json_text(value: Any) -> str:
    """``value`` as JSON text, for a JSON column: orjson, several times cheaper than the stdlib
    encoder, which only takes what orjson refuses (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def json_or_null(value: Any) -> str | None:
    """A payload body as JSON text, ``None`` staying NULL."""
    return json_text(value) if value is not None else None


#: ``row``'s values in :data:`COLUMNS` order, in one C call.
_IN_ORDER = operator.itemgetter(*COLUMNS)
#: Where the JSON columns sit in :data:`COLUMNS`, and what an absent one is stored as.
_JSON_AT: tuple[tuple[int, Any], ...] = tuple((COLUMNS.index(c), {} if c == "metadata" else []) for c in sorted(JSON_COLUMNS))


def column_values(row: Row) -> list[Any]:
    """``row``'s values in :data:`COLUMNS` order (a missing column is ``None``), with every NUL
    dropped (:func:`strip_nul`): what both stores insert."""
    try:
        values = list(_IN_ORDER(row))
    except KeyError:  # a row spooled by an older version may lack a newer column
        values = [row.get(c) for c in COLUMNS]
    if may_hold_nul(values):
        return [strip_nul(v) for v in values]
    return values


def dumps(row: Row) -> bytes:
    return orjson.dumps(row)


def loads(line: bytes) -> Row:
    value = orjson.loads(line)
    if not isinstance(value, dict):
        raise ValueError("a spooled row must be a JSON object")
    return value


def stored_values(row: Row) -> list[Any]:
    """What both stores insert for ``row``: :func:`column_values`, with each JSON column as
    JSON text (an absent one as its empty value).  Each store then adapts its own types."""
    values = column_values(row)
    for i, empty in _JSON_AT:
        value = values[i]
        values[i] = json_text(value if value is not None else empty)
    return values
