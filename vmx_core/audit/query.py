"""The audit and usage query languages: parsed, validated values plus the time buckets.

Both stores answer the same :class:`UsageQuery` with the same numbers: the SQL differs only in
a few dialect details (:mod:`vmx_core.audit.sql`), bucket boundaries are UTC and defined here
once (:func:`bucket_start`), and empty buckets are filled here, not in SQL.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

from vmx_core.audit.rows import iso, nul_safe, parse_iso
from vmx_core.errors import InvalidRequest

GRANULARITIES = ("minute", "hour", "day", "week", "month")
AGGREGATES = ("sum", "avg", "min", "max", "p50", "p90", "p95", "p99")
#: Usage dimension -> column.  ``metadata.KEY`` is also a dimension.
DIMENSIONS = {
    "resource": "resource", "connection": "connection", "provider": "provider", "model": "model",
    "api_key": "api_key_id", "status_code": "status_code",
}
#: Usage metrics.  ``requests`` counts rows and ``errors`` rows with status >= 400.
METRICS = (
    "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
    "cache_creation_tokens", "reasoning_tokens", "cost", "duration_ms", "ttft_ms", "upstream_ms",
    "gate_ms", "routing_ms",
)
_META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BUCKETS = 10_000
_DIGITS = re.compile(r"[0-9]{1,9}")
#: The keys of a usage query body (``agg`` is VM-X's name for ``metrics``).
USAGE_KEYS = frozenset({"granularity", "metrics", "agg", "dimensions", "filter"})


@frozen
class Filter:
    """``dimension IN values`` (one value means equality)."""

    dimension: str
    values: tuple[str | int, ...]


@frozen
class UsageQuery:
    workspace: str
    environment: str
    start: dt.datetime
    end: dt.datetime
    granularity: str
    metrics: tuple[tuple[str, str], ...]
    dimensions: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()

    @classmethod
    def from_body(cls, workspace: str, environment: str, body: Any, now: dt.datetime | None = None) -> UsageQuery:
        """Parse a ``POST /v1/request-usage`` body; errors name the failing field."""
        if not isinstance(body, Mapping):
            raise InvalidRequest("the body must be a JSON object", param="$")
        unknown = sorted(set(body) - USAGE_KEYS)
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: unknown key (one of {', '.join(sorted(USAGE_KEYS))})",
                                 param=str(unknown[0]))
        # Rows are stored NUL-safe (rows.nul_safe); a query matches them the same way.
        workspace, environment, body = nul_safe(workspace), nul_safe(environment), nul_safe(dict(body))
        granularity = body.get("granularity", "hour")
        if granularity not in GRANULARITIES:
            raise InvalidRequest(f"granularity: must be one of {', '.join(GRANULARITIES)}", param="granularity")
        if "metrics" in body and "agg" in body:
            raise InvalidRequest("agg: the same as metrics (VM-X's name); send one of them", param="agg")
        raw_metrics = body.get("metrics", body.get("agg", {"requests": "sum"}))
        if not isinstance(raw_metrics, Mapping) or not raw_metrics:
            raise InvalidRequest("metrics: must be an object {metric: aggregate}", param="metrics")
        metrics = []
        for name, agg in raw_metrics.items():
            if name not in METRICS:
                raise InvalidRequest(f"metrics.{name}: unknown metric (one of {', '.join(METRICS)})", param=f"metrics.{name}")
            if agg not in AGGREGATES:
                raise InvalidRequest(f"metrics.{name}: aggregate must be one of {', '.join(AGGREGATES)}", param=f"metrics.{name}")
            metrics.append((str(name), str(agg)))
        dims = body.get("dimensions", [])
        if not isinstance(dims, list):
            raise InvalidRequest("dimensions: must be a list", param="dimensions")
        for i, d in enumerate(dims):
            check_dimension(d, f"dimensions[{i}]")
        raw_filter = body.get("filter", {})
        if not isinstance(raw_filter, Mapping):
            raise InvalidRequest("filter: must be an object", param="filter")
        end = _time(raw_filter.get("end"), "filter.end") or (now or dt.datetime.now(dt.UTC))
        try:
            start = _time(raw_filter.get("start"), "filter.start") or end - dt.timedelta(hours=24)
            if start >= end:
                raise InvalidRequest("filter.start: must be before filter.end", param="filter.start")
            count = len(buckets(start, end, granularity))
        except (OverflowError, ValueError):  # past year 1 or 9999 once a day or a bucket is added
            raise InvalidRequest("filter: times must lie between the years 1 and 9999", param="filter") from None
        filters = parse_filters({k: v for k, v in raw_filter.items() if k not in ("start", "end")}, "filter")
        query = cls(workspace, environment, start, end, granularity, tuple(metrics), tuple(dims), filters)
        if count > MAX_BUCKETS:
            raise InvalidRequest(f"filter: more than {MAX_BUCKETS} {granularity} buckets; use a coarser granularity", param="granularity")
        return query


@frozen
class AuditQuery:
    workspace: str
    environment: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    filters: tuple[Filter, ...] = ()
    correlation_id: str | None = None
    limit: int = 100
    #: ``(timestamp, id)`` of the last row of the previous page.
    after: tuple[dt.datetime, str] | None = None

    @classmethod
    def from_params(cls, workspace: str, environment: str, params: Mapping[str, str]) -> AuditQuery:
        """Parse the audit API's query string."""
        workspace, environment, params = nul_safe(workspace), nul_safe(environment), nul_safe(dict(params))
        if "status" in params and "status_code" in params:
            raise InvalidRequest("status: the same filter as status_code; send one of them", param="status")
        fields: dict[str, Any] = {}
        for key, value in params.items():
            if key in ("resource", "connection", "model", "provider", "api_key") or key.startswith("metadata."):
                fields[key] = value.split(",")
            elif key in ("status", "status_code"):
                fields["status_code"] = value.split(",")
        raw_limit = params.get("limit", "100")
        if not _DIGITS.fullmatch(raw_limit):
            raise InvalidRequest("limit: must be an integer", param="limit")
        limit = int(raw_limit)
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit: must be between 1 and 1000", param="limit")
        return cls(
            workspace, environment,
            start=_time(params.get("start"), "start"), end=_time(params.get("end"), "end"),
            filters=parse_filters(fields, ""), correlation_id=params.get("correlation_id") or None,
            limit=limit, after=decode_cursor(params["cursor"]) if params.get("cursor") else None,
        )


def check_dimension(name: Any, where: str) -> None:
    if isinstance(name, str) and (name in DIMENSIONS or (name.startswith("metadata.") and _META_KEY.match(name[9:]))):
        return
    raise InvalidRequest(
        f"{where}: unknown dimension {name!r} (one of {', '.join(DIMENSIONS)}, metadata.KEY)", param=where
    )


def parse_filters(fields: Mapping[str, Any], where: str) -> tuple[Filter, ...]:
    out = []
    for name, raw in sorted(fields.items()):
        path = f"{where}.{name}" if where else name
        check_dimension(name, path)
        values = raw if isinstance(raw, list) else [raw]
        if not values or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
            raise InvalidRequest(f"{path}: must be a string or a list of strings", param=path)
        if name == "status_code":
            if not all(isinstance(v, int) or _DIGITS.fullmatch(v) for v in values):
                raise InvalidRequest(f"{path}: must be integers", param=path)
            values = [int(v) for v in values]
        else:
            values = [str(v) for v in values]
        out.append(Filter(name, tuple(values)))
    return tuple(out)


def _time(value: Any, where: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        rel = re.fullmatch(r"-?(\d+)([mhdw])", value)
        try:
            if rel:  # "24h" means 24 hours ago
                unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[rel.group(2)]
                return dt.datetime.now(dt.UTC) - dt.timedelta(**{unit: int(rel.group(1))})
            return parse_iso(value).astimezone(dt.UTC)
        except (ValueError, OverflowError):  # not a time, or not one between the years 1 and 9999
            pass
    raise InvalidRequest(f"{where}: expected an ISO 8601 time or a duration like 24h", param=where)


# -- time buckets -------------------------------------------------------------------------------


def bucket_start(ts: dt.datetime, granularity: str) -> dt.datetime:
    """The UTC start of the bucket holding ``ts``; weeks start on Monday (ISO 8601)."""
    t = ts.astimezone(dt.UTC)
    if granularity == "minute":
        return t.replace(second=0, microsecond=0)
    if granularity == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    if granularity == "week":
        return day - dt.timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    raise ValueError(granularity)


def next_bucket(ts: dt.datetime, granularity: str) -> dt.datetime:
    if granularity == "month":
        return ts.replace(year=ts.year + ts.month // 12, month=ts.month % 12 + 1)
    step = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1),
            "week": dt.timedelta(weeks=1)}[granularity]
    return ts + step


def buckets(start: dt.datetime, end: dt.datetime, granularity: str) -> list[dt.datetime]:
    """Every bucket overlapping ``[start, end)``, in order."""
    out: list[dt.datetime] = []
    b = bucket_start(start, granularity)
    while b < end and len(out) <= MAX_BUCKETS:
        out.append(b)
        b = next_bucket(b, granularity)
    return out


def zero_fill(query: UsageQuery, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (bucket, dimension combination seen); sums of empty buckets are 0, other
    aggregates of empty buckets are null (an average of nothing is not zero)."""
    dims = query.dimensions
    seen: dict[tuple[Any, ...], None] = {}
    by_key: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in rows:
        combo = tuple(row.get(d) for d in dims)
        seen.setdefault(combo)
        by_key[(row["bucket"], *combo)] = row
    combos = list(seen) or ([()] if not dims else [])
    out = []
    for b in buckets(query.start, query.end, query.granularity):
        stamp = iso(b)
        for combo in combos:
            found = by_key.get((stamp, *combo))
            point: dict[str, Any] = {"bucket": stamp, **dict(zip(dims, combo, strict=True))}
            for name, agg in query.metrics:
                value = found.get(name) if found else None
                point[name] = (0 if value is None else value) if agg == "sum" else value
            out.append(point)
    return out


# -- pagination cursors -------------------------------------------------------------------------


def encode_cursor(timestamp: str, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{timestamp}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        return parse_iso(stamp), str(uuid.UUID(row_id))
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("cursor: not a cursor returned by this API", param="cursor") from None
