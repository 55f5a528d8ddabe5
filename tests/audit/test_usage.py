"""The usage query: generated rows, aggregates computed here, same answers on both stores."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.audit.conftest import make_row
from vmx_core.audit.api import audit_page, usage_report
from vmx_core.audit.query import AuditQuery, UsageQuery, bucket_start
from vmx_core.audit.rows import iso
from vmx_core.audit.sqlite import percentile_cont
from vmx_core.audit.store import AuditStore, open_store
from vmx_core.errors import InvalidRequest

START = dt.datetime(2026, 2, 28, 22, 0, tzinfo=dt.UTC)  # crosses hour, day and month bounds
SPAN = dt.timedelta(hours=3)

rows_strategy = st.lists(
    st.fixed_dictionaries({
        "offset_s": st.integers(0, int(SPAN.total_seconds()) - 1),
        "resource": st.sampled_from(["a", "b"]),
        "status_code": st.sampled_from([200, 429, 502]),
        "duration_ms": st.floats(0, 5000, allow_nan=False).map(lambda f: round(f, 3)),
        "prompt_tokens": st.one_of(st.none(), st.integers(0, 10_000)),
        "team": st.one_of(st.none(), st.sampled_from(["x", "y"])),
    }),
    max_size=25,
)
query_strategy = st.fixed_dictionaries({
    "granularity": st.sampled_from(["minute", "hour", "day", "week", "month"]),
    "metric": st.sampled_from(["requests", "errors", "duration_ms", "prompt_tokens"]),
    "agg": st.sampled_from(["sum", "avg", "min", "max", "p50", "p90", "p95", "p99"]),
    "dimensions": st.lists(st.sampled_from(["resource", "status_code", "metadata.team"]), unique=True, max_size=2),
    "only_resource": st.one_of(st.none(), st.just("a")),
})


def _value(spec: dict[str, Any], metric: str) -> float | None:
    if metric == "requests":
        return 1
    if metric == "errors":
        return 1 if spec["status_code"] >= 400 else 0
    return spec[metric]  # type: ignore[no-any-return]


def _expected(specs: list[dict[str, Any]], q: dict[str, Any]) -> dict[tuple[Any, ...], float | None]:
    groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for s in specs:
        if q["only_resource"] and s["resource"] != q["only_resource"]:
            continue
        ts = START + dt.timedelta(seconds=s["offset_s"])
        dims = tuple(s["team"] if d == "metadata.team" else s[d] for d in q["dimensions"])
        value = _value(s, q["metric"])
        groups[(iso(bucket_start(ts, q["granularity"])), *dims)]
        if value is not None:
            groups[(iso(bucket_start(ts, q["granularity"])), *dims)].append(float(value))
    out: dict[tuple[Any, ...], float | None] = {}
    for key, values in groups.items():
        agg = q["agg"]
        if agg == "sum":
            out[key] = sum(values)
        elif not values:
            out[key] = None
        elif agg == "avg":
            out[key] = sum(values) / len(values)
        elif agg in ("min", "max"):
            out[key] = min(values) if agg == "min" else max(values)
        else:
            out[key] = percentile_cont(values, int(agg[1:]) / 100)
    return out


async def _check(uri: str, specs: list[dict[str, Any]], q: dict[str, Any]) -> None:
    ws = f"w{uuid.uuid4().hex[:12]}"  # each example gets its own tenant in the shared database
    rows = [
        make_row(workspace=ws, timestamp=iso(START + dt.timedelta(seconds=s["offset_s"])), resource=s["resource"],
                 status_code=s["status_code"], duration_ms=s["duration_ms"], prompt_tokens=s["prompt_tokens"],
                 metadata={"team": s["team"]} if s["team"] else {})
        for s in specs
    ]
    store: AuditStore = open_store(uri)
    await store.connect()
    try:
        await store.write(rows)
        body: dict[str, Any] = {
            "granularity": q["granularity"], "metrics": {q["metric"]: q["agg"]}, "dimensions": q["dimensions"],
            "filter": {"start": iso(START), "end": iso(START + SPAN),
                       **({"resource": q["only_resource"]} if q["only_resource"] else {})},
        }
        report = await usage_report(store, UsageQuery.from_body(ws, "prod", body))
    finally:
        await store.aclose()
    expected = _expected(specs, q)
    got = {(p["bucket"], *(p[d] for d in q["dimensions"])): p[q["metric"]] for p in report["data"]}
    for key, value in expected.items():
        assert key in got
        assert got[key] == (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9))
    for key, value in got.items():  # zero-filled buckets: sums are 0, other aggregates null
        if key not in expected:
            assert value == (0 if q["agg"] == "sum" else None)
    buckets = sorted({p["bucket"] for p in report["data"]})
    assert buckets == sorted({iso(b) for b in _all_buckets(q["granularity"])}) or not report["data"]


def _all_buckets(granularity: str) -> list[dt.datetime]:
    from vmx_core.audit.query import buckets

    return buckets(START, START + SPAN, granularity)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=rows_strategy, q=query_strategy)
def test_usage_matches_aggregates_computed_from_the_rows(store_uri: str, specs: list[dict[str, Any]], q: dict[str, Any]) -> None:
    """Every (bucket, dimensions) aggregate equals the one computed in Python from the rows."""
    asyncio.run(_check(store_uri, specs, q))


def test_usage_query_rejects_unknown_names_with_their_path() -> None:
    """Unknown metrics, aggregates and dimensions are 400s naming the field."""
    for body, param in [
        ({"metrics": {"bogus": "sum"}}, "metrics.bogus"),
        ({"metrics": {"requests": "median"}}, "metrics.requests"),
        ({"dimensions": ["secret"]}, "dimensions[0]"),
        ({"granularity": "second"}, "granularity"),
    ]:
        with pytest.raises(InvalidRequest) as err:
            UsageQuery.from_body("w", "e", body)
        assert err.value.param == param


async def test_audit_pages_and_filters(store: AuditStore) -> None:
    """Pages of the audit API cover every matching row once; filters narrow the rows."""
    base = dt.datetime.now(dt.UTC)
    rows = [make_row(timestamp=iso(base - dt.timedelta(seconds=i)), resource="a" if i % 2 else "b",
                     metadata={"team": "x"} if i % 3 == 0 else {}, correlation_id=f"c{i}") for i in range(25)]
    await store.write(rows)
    seen, cursor = [], None
    while True:
        page = await audit_page(store, AuditQuery.from_params("acme", "prod", {"limit": "10", **({"cursor": cursor} if cursor else {})}))
        seen.extend(r["id"] for r in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in rows]  # newest first, each once
    only_a = await audit_page(store, AuditQuery.from_params("acme", "prod", {"resource": "a", "limit": "100"}))
    assert len(only_a["data"]) == 12 and {r["resource"] for r in only_a["data"]} == {"a"}
    team = await audit_page(store, AuditQuery.from_params("acme", "prod", {"metadata.team": "x"}))
    assert len(team["data"]) == 9
    corr = await audit_page(store, AuditQuery.from_params("acme", "prod", {"correlation_id": "c7"}))
    assert [r["id"] for r in corr["data"]] == [rows[7]["id"]]
