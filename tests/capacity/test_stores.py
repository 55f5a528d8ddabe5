"""The shared store suite: memory, Redis and Redis Cluster must behave identically."""

from __future__ import annotations

import asyncio

from tests.capacity.conftest import Clock
from vmx_core.capacity.store import Adjustment, CapacityStore
from vmx_core.capacity.window import Check, Window, retry_after

MINUTE = Window.of("minute")
T0 = 1_800_000_000.0  # a multiple of the minute bucket width: bucket arithmetic stays readable


def chk(key: str, requests: int | None = None, tokens: int | None = None, cost: int = 0, window: Window = MINUTE) -> Check:
    return Check("vmx:{t}:" + key, window, requests, tokens, 1, cost)


async def test_admits_up_to_the_request_limit_then_refuses(store: CapacityStore, tenant: str) -> None:
    """Exactly N admissions fit a limit of N requests; the next is refused."""
    c = chk(tenant + "a", requests=5)
    results = [(await store.admit([c], T0)).admitted for _ in range(7)]
    assert results == [True] * 5 + [False] * 2


async def test_admission_is_all_or_nothing(store: CapacityStore, tenant: str) -> None:
    """When one limit refuses, no other limit of the same admission is charged."""
    wide, narrow = chk(tenant + "wide", requests=10), chk(tenant + "narrow", requests=1)
    assert (await store.admit([wide, narrow], T0)).admitted
    refused = await store.admit([wide, narrow], T0)
    assert not refused.admitted
    assert [c.requests for c in await store.usage([wide, narrow], T0)] == [1, 1]


async def test_refusal_reports_the_buckets_for_retry_after(store: CapacityStore, tenant: str) -> None:
    """A refusal returns per-bucket counts, so Retry-After is when the oldest admission expires."""
    c = chk(tenant + "r", requests=2)
    assert (await store.admit([c], T0 + 0.5)).admitted
    assert (await store.admit([c], T0 + 10.5)).admitted
    refused = await store.admit([c], T0 + 20.5)
    assert not refused.admitted
    assert dict(refused.counts[0].buckets) == {int(T0): (1, 0), int(T0) + 10: (1, 0)}
    # The bucket [T0, T0+1) stops counting once it no longer overlaps (now - 60, now].
    assert retry_after(c, refused.counts[0], T0 + 20.5) == 40.5


async def test_tokens_reserve_against_the_token_limit(store: CapacityStore, tenant: str) -> None:
    """A reservation is refused when it would take the token sum over the limit."""
    key = tenant + "tok"
    assert (await store.admit([chk(key, tokens=1000, cost=600)], T0)).admitted
    assert not (await store.admit([chk(key, tokens=1000, cost=401)], T0)).admitted
    assert (await store.admit([chk(key, tokens=1000, cost=400)], T0)).admitted
    assert (await store.usage([chk(key)], T0))[0].tokens == 1000


async def test_window_slides_and_forgets_between_t_and_t_plus_one_bucket(store: CapacityStore, tenant: str) -> None:
    """An admission still counts just under 60 s later and is forgotten 61 s later."""
    c = chk(tenant + "slide", requests=1)
    assert (await store.admit([c], T0 + 0.2)).admitted
    assert not (await store.admit([c], T0 + 59.9)).admitted
    assert not (await store.admit([c], T0 + 60.5)).admitted  # bucket [T0, T0+1) still overlaps
    assert (await store.admit([c], T0 + 61.0)).admitted


async def test_lifetime_limits_never_expire(store: CapacityStore, tenant: str) -> None:
    """A lifetime limit keeps counting forever."""
    c = chk(tenant + "life", requests=1, window=Window.of("lifetime"))
    assert (await store.admit([c], T0)).admitted
    assert not (await store.admit([c], T0 + 10 * 365 * 86400)).admitted


async def test_adjust_refunds_charges_and_never_goes_below_zero(store: CapacityStore, tenant: str) -> None:
    """Reconciliation moves tokens both ways inside the admission's bucket, floored at zero."""
    c = chk(tenant + "adj", tokens=1000, cost=500)
    assert (await store.admit([c], T0)).admitted
    bucket, oldest, ttl = MINUTE.bucket(T0), MINUTE.oldest(T0), MINUTE.ttl_ms()
    await store.adjust([Adjustment(c.key, bucket, oldest, 0, -200, ttl)])
    assert (await store.usage([c], T0))[0].tokens == 300
    await store.adjust([Adjustment(c.key, bucket, oldest, 0, 900, ttl)])
    assert (await store.usage([c], T0))[0].tokens == 1200
    await store.adjust([Adjustment(c.key, bucket, oldest, -5, -5000, ttl)])
    assert (await store.usage([c], T0))[0] .requests == 0
    assert (await store.usage([c], T0))[0].tokens == 0


async def test_adjust_leaves_forgotten_buckets_alone(store: CapacityStore, tenant: str) -> None:
    """A reconciliation after the admission left the window charges nothing."""
    c = chk(tenant + "late", tokens=1000, cost=100)
    assert (await store.admit([c], T0)).admitted
    later = T0 + 120
    await store.adjust([Adjustment(c.key, MINUTE.bucket(T0), MINUTE.oldest(later), 0, 500, MINUTE.ttl_ms())])
    assert (await store.usage([c], later))[0].tokens == 0


async def test_concurrent_admissions_never_overshoot(store: CapacityStore, tenant: str) -> None:
    """200 concurrent admissions against a limit of 50: exactly 50 pass."""
    c = chk(tenant + "conc", requests=50, tokens=10_000, cost=100)
    results = await asyncio.gather(*(store.admit([c], T0) for _ in range(200)))
    assert sum(r.admitted for r in results) == 50
    assert (await store.usage([c], T0))[0].tokens == 5000


async def test_no_boundary_burst_across_a_window_edge(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """Requests around a fixed-window edge never put more than the limit in any 60 s interval."""
    c = chk(tenant + "edge", requests=10)
    admitted: list[float] = []
    t = T0 + 50.0
    while t < T0 + 200:  # a request every 0.5 s from 10 s before an edge, for 150 s
        if (await store.admit([c], t)).admitted:
            admitted.append(t)
        t += 0.5
    assert admitted, "some requests must be admitted"
    worst = max(sum(1 for x in admitted if start <= x < start + 60) for start in admitted)
    assert worst == 10
