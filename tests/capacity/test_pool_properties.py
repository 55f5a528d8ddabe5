"""Hypothesis properties of prioritization pools: the allocation alone, then the gate driven by
generated pool configs and demand sequences (min guarantee, budget bound, rank order)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from attrs import define, field
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.capacity.conftest import Clock
from tests.capacity.pooling import pool, pooled_config, pooled_gate, subject
from vmx_core.capacity.allocation import allocate, decide
from vmx_core.capacity.gate import PoolRefused, Ticket
from vmx_core.capacity.memory import MemoryStore
from vmx_core.capacity.window import Check
from vmx_core.wire.usage import Usage

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def shares(draw: st.DrawFn) -> tuple[int, list[int], list[int], list[int]]:
    """(budget, minimums, maximums, wants) in tokens, minimums adding up to the budget at most."""
    budget = draw(st.integers(0, 10_000))
    n = draw(st.integers(1, 5))
    minimums: list[int] = []
    for _ in range(n):
        minimums.append(draw(st.integers(0, budget - sum(minimums))))
    maximums = [draw(st.integers(lo, budget)) for lo in minimums]
    wants = draw(st.lists(st.integers(0, 2 * budget + 1), min_size=n, max_size=n))
    return budget, minimums, maximums, wants


@SETTINGS
@given(shares())
def test_allocation_guarantees_minimums_bounds_and_lends_in_rank_order(case: tuple[int, list[int], list[int], list[int]]) -> None:
    """Each pool gets min(minimum, want), never more than min(maximum, want), all within the
    budget; lending reaches a pool only when every more important one is satisfied, and budget
    is left over only when every pool is."""
    budget, minimums, maximums, wants = case
    guarantees, alloc = allocate(budget, minimums, maximums, wants)
    satisfied = [min(hi, w) for hi, w in zip(maximums, wants, strict=True)]
    assert list(guarantees) == [min(lo, w) for lo, w in zip(minimums, wants, strict=True)]
    assert all(g <= a <= s for g, a, s in zip(guarantees, alloc, satisfied, strict=True))
    assert sum(alloc) <= budget
    for q in range(len(alloc)):
        if alloc[q] > guarantees[q]:
            assert all(alloc[p] == satisfied[p] for p in range(q)), (q, alloc)
    if sum(alloc) < budget:
        assert list(alloc) == satisfied


def test_the_worked_example_of_capacity_md() -> None:
    """docs/capacity.md's example: bulk is refused its share, batch the room held for
    interactive's waiting demand, and interactive, within its minimum, is admitted."""
    minimums, maximums = (24_000, 18_000, 6_000), (60_000, 42_000, 60_000)
    used, unmet = (6_000, 30_000, 20_000), (8_000, 0, 4_000)
    bulk = decide(60_000, 56_000, minimums, maximums, used, unmet, 2, 2_000)
    assert bulk.allocation == (14_000, 30_000, 16_000) and not bulk.share_ok
    batch = decide(60_000, 56_000, minimums, maximums, used, unmet, 1, 2_000)
    assert batch.share_ok and batch.held == 8_000 and not batch.room_ok
    interactive = decide(60_000, 56_000, minimums, maximums, used, unmet, 0, 2_000)
    assert interactive.within_minimum and interactive.admitted


# -- the gate, driven ------------------------------------------------------------------------


@st.composite
def pool_configs(draw: st.DrawFn) -> tuple[int, list[dict[str, Any]]]:
    budget = draw(st.integers(100, 5_000))
    pools: list[dict[str, Any]] = []
    room = 100
    for i in range(draw(st.integers(1, 4))):
        lo = draw(st.integers(0, room))
        room -= lo
        pools.append(pool(f"p{i}", draw(st.integers(0, 3)), lo, draw(st.integers(lo, 100))))
    return budget, pools


#: One round: seconds to move the clock first, then requests at that same instant (which pool
#: asks, 4 being a resource in no pool, and the cost as a fraction of the budget), then what
#: becomes of one earlier admission (kept, settled to a fraction of its reservation, refunded).
rounds = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 1, 2, 5, 11, 61]),
        st.lists(st.tuples(st.integers(0, 4), st.sampled_from([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35])), min_size=1, max_size=6),
        st.sampled_from(["keep", "keep", "settle", "refund"]),
        st.floats(0, 1),
    ),
    min_size=1,
    max_size=40,
)


@define
class Ledger:
    """What the store counts, kept by the test itself: the clock only moves by whole seconds,
    so an admission at ``a`` is counted at ``t`` exactly while ``a >= t - 60``."""

    #: [pool, admitted at, tokens counted]
    entries: list[list[Any]] = field(factory=list)

    def used(self, name: str | None, t: float) -> int:
        """What pool ``name`` (None: traffic outside every pool) has counted at ``t``."""
        return sum(e[2] for e in self.entries if e[0] == name and e[1] >= t - 60)

    def spent(self, t: float) -> int:
        return sum(e[2] for e in self.entries if e[1] >= t - 60)


@SETTINGS
@given(pool_configs(), rounds)
def test_the_gate_keeps_its_promises_for_any_pools_and_demand(config: tuple[int, list[dict[str, Any]]], plan: list[Any]) -> None:
    """For generated pools and demand: neither the budget nor a pool's maximum is ever exceeded;
    right after a refusal within a pool's minimum nobody less important, nor past its own
    minimum, is admitted; right after a refusal within a pool's maximum nobody less important
    borrows; and the store counts what the test counts."""
    budget, pools = config
    names: list[str | None] = [p["name"] for p in sorted(pools, key=lambda p: p["rank"])] + [None]
    tokens = {p["name"]: (budget * p["min_reservation"] // 100, budget * p["max_reservation"] // 100) for p in pools}
    tokens[None] = (0, budget)  # traffic outside every pool

    async def drive() -> None:
        clock, tenant = Clock(), f"ws-{uuid.uuid4().hex[:8]}"
        gate = pooled_gate(MemoryStore(), pooled_config(tenant, budget, pools), clock)
        ledger, tickets = Ledger(), list[tuple[int, Ticket]]()
        for advance, asks, fate, pick in plan:
            clock.advance(advance)
            t = clock.now
            refused_now: dict[str | None, tuple[bool, bool]] = {}  # refused at this very instant
            for which, fraction in asks:
                name = names[min(which, len(names) - 1)]
                cost = int(budget * fraction)
                lo, hi = tokens[name]
                used = ledger.used(name, t)
                try:
                    ticket = await gate.admit(subject(tenant, name), cost)
                except PoolRefused:
                    refused_now[name] = (used + cost <= lo, used + cost <= hi)
                    continue
                assert used + cost <= hi, f"{name} went past its maximum"
                beyond = used + cost > lo
                for p, (within_min, within_max) in refused_now.items():
                    more_important = names.index(p) < names.index(name)
                    if p != name and within_min:
                        assert not (more_important or beyond), f"{name} took the room {p} was refused within its minimum"
                    if p != name and within_max:
                        assert not (more_important and beyond), f"{name} borrowed right after {p} was refused"
                ledger.entries.append([name, t, cost])
                assert ledger.spent(t) <= budget
                tickets.append((len(ledger.entries) - 1, ticket))
            if fate == "keep" or not tickets:
                continue
            i, earlier = tickets.pop(int(pick * (len(tickets) - 1)))
            if ledger.entries[i][1] < t - 60:
                continue  # the store leaves a bucket that left the window alone: so does the test
            if fate == "refund":
                await gate.refund(earlier)
                ledger.entries[i][2] = 0
            else:
                ledger.entries[i][2] = int(earlier.reserved * pick)
                await gate.settle(earlier, Usage(ledger.entries[i][2], 0))
        # The test's count is the store's: the budget, and each pool's own counter.
        budget_check = gate.limits(subject(tenant, None))[0].check(None, {}, 0)
        assert (await gate.store.usage([budget_check], clock.now))[0].tokens == ledger.spent(clock.now)
        for name in names:
            check = gate.pool_check(subject(tenant, name))
            assert check is not None
            counter = Check(check.used_keys[check.asker], check.used_window, None, None, 0, 0)
            assert (await gate.store.usage([counter], clock.now))[0].tokens == ledger.used(name, clock.now)

    asyncio.run(drive())
