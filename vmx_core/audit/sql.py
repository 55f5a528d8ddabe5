"""The audit and usage SQL, written once and rendered for SQLite or Postgres.

The dialects differ in placeholders, how a time is bucketed, how a metadata key is read and how
a percentile is computed (Postgres' ``percentile_cont``; on SQLite a Python aggregate with the
same linear interpolation).  Every value is a bound parameter; names (columns, metadata keys)
come from validated allow-lists only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from attrs import frozen

from vmx_core.audit.query import DIMENSIONS, AuditQuery, Filter, UsageQuery
from vmx_core.audit.rows import COLUMNS, iso

_PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


@frozen
class Dialect:
    name: str

    @property
    def ph(self) -> str:
        return "%s" if self.name == "postgres" else "?"

    def ts(self) -> str:
        return '"timestamp"' if self.name == "postgres" else "timestamp"

    def ts_param(self, value: dt.datetime) -> Any:
        return value if self.name == "postgres" else iso(value)

    def bucket(self, granularity: str) -> tuple[str, list[Any]]:
        if self.name == "postgres":
            return f"date_trunc({self.ph}, {self.ts()} AT TIME ZONE 'UTC')", [granularity]
        return f"vmx_bucket({self.ts()}, {self.ph})", [granularity]

    def dimension(self, name: str) -> tuple[str, list[Any]]:
        if name.startswith("metadata."):
            key = name[len("metadata."):]
            if self.name == "postgres":
                return f"metadata->>{self.ph}", [key]
            return f"json_extract(metadata, {self.ph})", [f'$."{key}"']
        return DIMENSIONS[name], []

    def metric(self, name: str) -> str:
        if name == "requests":
            return "1"
        if name == "errors":
            return "CASE WHEN status_code >= 400 THEN 1 ELSE 0 END"
        if name == "cost" and self.name == "postgres":
            return "cost::float8"  # numeric would come back as Decimal
        return name

    def aggregate(self, agg: str, expr: str) -> str:
        if agg in _PERCENTILES:
            p = _PERCENTILES[agg]
            if self.name == "postgres":
                return f"percentile_cont({p}) WITHIN GROUP (ORDER BY {expr})"
            return f"vmx_percentile({expr}, {p})"
        if agg == "sum":
            return f"SUM({expr})"
        return f"{agg.upper()}({expr})"


def _where(d: Dialect, workspace: str, environment: str, start: dt.datetime | None, end: dt.datetime | None,
           filters: tuple[Filter, ...]) -> tuple[str, list[Any]]:
    parts = [f"workspace = {d.ph}", f"environment = {d.ph}"]
    params: list[Any] = [workspace, environment]
    if start is not None:
        parts.append(f"{d.ts()} >= {d.ph}")
        params.append(d.ts_param(start))
    if end is not None:
        parts.append(f"{d.ts()} < {d.ph}")
        params.append(d.ts_param(end))
    for f in filters:
        expr, extra = d.dimension(f.dimension)
        params.extend(extra)
        parts.append(f"{expr} IN ({', '.join([d.ph] * len(f.values))})")
        params.extend(f.values)
    return " AND ".join(parts), params


def usage_sql(d: Dialect, q: UsageQuery) -> tuple[str, list[Any]]:
    bucket, params = d.bucket(q.granularity)
    select = [f"{bucket} AS bucket"]
    for i, name in enumerate(q.dimensions):
        expr, extra = d.dimension(name)
        select.append(f"{expr} AS d{i}")
        params.extend(extra)
    for i, (name, agg) in enumerate(q.metrics):
        select.append(f"{d.aggregate(agg, d.metric(name))} AS m{i}")
    where, wparams = _where(d, q.workspace, q.environment, q.start, q.end, q.filters)
    group = ", ".join(str(i + 1) for i in range(1 + len(q.dimensions)))
    sql = f"SELECT {', '.join(select)} FROM request_audit WHERE {where} GROUP BY {group} ORDER BY {group}"
    return sql, params + wparams


def audit_sql(d: Dialect, q: AuditQuery) -> tuple[str, list[Any]]:
    where, params = _where(d, q.workspace, q.environment, q.start, q.end, q.filters)
    if q.correlation_id is not None:
        where += f" AND correlation_id = {d.ph}"
        params.append(q.correlation_id)
    if q.after is not None:
        id_param = f"{d.ph}::uuid" if d.name == "postgres" else d.ph
        where += f" AND ({d.ts()}, id) < ({d.ph}, {id_param})"
        params.extend([d.ts_param(q.after[0]), q.after[1]])
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    sql = f"SELECT {cols} FROM request_audit WHERE {where} ORDER BY {d.ts()} DESC, id DESC LIMIT {q.limit + 1:d}"
    return sql, params


def usage_rows(q: UsageQuery, raw: list[tuple[Any, ...]], bucket_iso: Any) -> list[dict[str, Any]]:
    """Name the positional columns of :func:`usage_sql`'s result."""
    out = []
    for r in raw:
        row: dict[str, Any] = {"bucket": bucket_iso(r[0])}
        for i, name in enumerate(q.dimensions):
            row[name] = r[1 + i]
        for i, (name, _) in enumerate(q.metrics):
            row[name] = r[1 + len(q.dimensions) + i]
        out.append(row)
    return out
