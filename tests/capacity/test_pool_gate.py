"""The pool gate on every store, step by step on a clock the test moves: lending, reclaiming,
maximums, answers, waiting, and what has no pool gate."""

from __future__ import annotations

from typing import Any

import pytest

from tests.capacity.conftest import Clock
from tests.capacity.pooling import FakeSleep, pool, pooled_config, pooled_gate, subject
from vmx_core.capacity.allocation import UNMET
from vmx_core.capacity.gate import FREE, CapacityRefused, Gate, PoolRefused, Subject
from vmx_core.capacity.store import CapacityStore
from vmx_core.capacity.window import Check
from vmx_core.wire.usage import Usage

HIGH_LOW = [pool("high", 1, 50, 100), pool("low", 2, 10, 100)]


async def admitted(gate: Gate, tenant: str, name: str | None, cost: int, **kw: Any) -> bool:
    try:
        await gate.admit(subject(tenant, name), cost, **kw)
    except PoolRefused:
        return False
    return True


async def pool_tokens(gate: Gate, tenant: str, name: str | None, counter: str = "used") -> int:
    """A pool's ``used`` (or ``unmet``) counter on connection c, as the store counts it now."""
    check = gate.pool_check(subject(tenant, name))
    assert check is not None
    if counter == "used":
        read = Check(check.used_keys[check.asker], check.used_window, None, None, 0, 0)
    else:
        read = Check(check.unmet_keys[check.asker], UNMET, None, None, 0, 0)
    return (await gate.store.usage([read], gate.clock()))[0].tokens


async def test_idle_minimum_is_lent_then_reclaimed_for_its_owner(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """An idle pool's minimum is lent; once its owner asks, what the owner waits for is held for
    it as the borrowed tokens leave, and the borrower gets only the rest."""
    gate = pooled_gate(store, pooled_config(tenant, 1000, HIGH_LOW), clock)
    assert await admitted(gate, tenant, "low", 500)
    clock.advance(30)
    assert await admitted(gate, tenant, "low", 500)  # all lent: high is idle
    clock.advance(22)
    assert not await admitted(gate, tenant, "high", 100)  # the owner asks: nothing is free
    clock.advance(4)
    assert not await admitted(gate, tenant, "high", 100)  # (two requests waiting: 200)
    clock.advance(5)  # +61 s: the first 500 leave the window
    assert not await admitted(gate, tenant, "low", 400)  # would take what high waits for
    assert await admitted(gate, tenant, "low", 300)
    assert await admitted(gate, tenant, "high", 100) and await admitted(gate, tenant, "high", 100)
    assert await pool_tokens(gate, tenant, "high") == 200 and await pool_tokens(gate, tenant, "low") == 800


async def test_a_pool_never_borrows_past_its_maximum(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """With the rest of the budget idle, a pool is still held to its max_reservation."""
    gate = pooled_gate(store, pooled_config(tenant, 1000, [pool("capped", 1, 10, 30)]), clock)
    assert [await admitted(gate, tenant, "capped", 100) for _ in range(4)] == [True] * 3 + [False]
    assert await admitted(gate, tenant, None, 700)  # traffic outside pools takes the rest


async def test_lending_goes_to_the_more_important_pool_first(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """Two pools past their minimums both waiting: freed capacity goes to the better rank."""
    pools = [pool("gold", 1, 20, 100), pool("silver", 2, 20, 100)]
    gate = pooled_gate(store, pooled_config(tenant, 1000, pools), clock)
    for _ in range(3):
        assert await admitted(gate, tenant, "silver", 100)
    for _ in range(7):
        assert await admitted(gate, tenant, "gold", 100)
    clock.advance(61)
    # Both are idle now: whoever asks first borrows...
    assert await admitted(gate, tenant, "silver", 500)
    assert not await admitted(gate, tenant, "silver", 600)  # (only 500 left)
    assert not await admitted(gate, tenant, "gold", 600)
    # ...but once gold is waiting, silver may only fill what gold does not claim.
    assert not await admitted(gate, tenant, "silver", 100)
    assert await admitted(gate, tenant, "gold", 500)


async def test_refusal_answers_429_with_the_allocation_and_retry_after(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """prioritization_gate_denied names the pools' allocation, never the connection or the
    tenant, with Retry-After until the pool's own tokens leave and the pool's x-ratelimit-*."""
    gate = pooled_gate(store, pooled_config(tenant, 1000, [pool("capped", 1, 10, 30)]), clock)
    clock.advance(0.5)
    await gate.admit(subject(tenant, "capped"), 300)
    clock.advance(10)
    with pytest.raises(PoolRefused) as info:
        await gate.admit(subject(tenant, "capped"), 50)
    err = info.value
    assert err.status == 429 and err.openai_code == "prioritization_gate_denied" and err.connection_only
    assert "pool 'capped' has used 300 of the 300 tokens allocated to it" in err.message
    assert "minute budget of 1000 tokens: capped 300 (used 300)" in err.message
    assert tenant not in err.message and "connection c" not in err.message and "'c'" not in err.message
    assert err.headers["retry-after"] == "51"  # the bucket of +0.5 s leaves at +61 s
    assert (err.headers["x-ratelimit-limit-tokens"], err.headers["x-ratelimit-remaining-tokens"]) == ("300", "0")


async def test_a_waiting_request_keeps_its_claim_until_admitted(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """A request over its share waits (on the gate's sleep: here the test's clock) while its
    pool's minimum is lent; borrowers asking meanwhile cannot take the room it waits for, even
    after longer than the unmet window; it is admitted once the lent tokens leave."""
    gate = pooled_gate(store, pooled_config(tenant, 1000, [pool("p", 1, 30, 100, max_wait_ms=30_000), pool("low", 2, 0, 100)]), clock)
    await gate.admit(subject(tenant, "low"), 1000)
    clock.advance(40)
    borrower: list[bool] = []

    async def sleep_while_low_asks(seconds: float) -> None:
        clock.advance(seconds)
        if clock.now >= 1_800_000_061.0 and not borrower:  # the lent tokens just left
            borrower.append(await admitted(gate, tenant, "low", 800))

    gate.sleep = sleep_while_low_asks
    ticket = await gate.admit(subject(tenant, "p"), 300, patience=30.0)
    assert ticket.share is not None and borrower == [False]
    assert 1_800_000_061.0 <= clock.now <= 1_800_000_062.0
    assert await admitted(gate, tenant, "low", 700)  # the rest is lent again


async def test_the_wait_is_bounded_by_max_wait_and_by_the_deadline(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """A request waits no longer than its pool's max_wait_ms, nor its own remaining time."""
    gate = pooled_gate(store, pooled_config(tenant, 1000, [pool("p", 1, 0, 30, max_wait_ms=3_000)]), clock)
    await gate.admit(subject(tenant, "p"), 300)
    sleep = gate.sleep
    assert isinstance(sleep, FakeSleep)
    with pytest.raises(PoolRefused):
        await gate.admit(subject(tenant, "p"), 100, patience=30.0)
    assert 2.9 <= sum(sleep.slept) <= 3.0
    sleep.slept.clear()
    with pytest.raises(PoolRefused):
        await gate.admit(subject(tenant, "p"), 100, patience=1.25)
    assert sum(sleep.slept) == pytest.approx(1.25)
    assert gate.pool_denials == 2


async def test_traffic_outside_pools_borrows_after_every_pool(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """Resources in no pool share a pool ranked last: they borrow what pools leave, and never
    take a pool's minimum while the pool is waiting for it."""
    gate = pooled_gate(store, pooled_config(tenant, 1000, [pool("p", 1, 40, 60)]), clock)
    assert await admitted(gate, tenant, None, 900)  # the pool is idle: all of it is lent
    clock.advance(55)
    assert not await admitted(gate, tenant, "p", 200)  # 100 left: the pool waits for its 40%
    clock.advance(3)
    assert not await admitted(gate, tenant, "p", 200)
    clock.advance(3)  # +61 s: the 900 leave; the pool's 400 are held for it
    assert not await admitted(gate, tenant, None, 700)
    assert await admitted(gate, tenant, None, 600)
    assert await admitted(gate, tenant, "p", 200) and await admitted(gate, tenant, "p", 200)


async def test_legs_without_a_budget_have_no_pool_gate(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """A connection without a minute token limit (or one split by a dimension) is not pooled."""
    split = [{"period": "minute", "tokens": 10, "dimension": "source-ip"}]
    config = pooled_config(tenant, 1000, [pool("p", 1, 0, 1)], limits=split)
    gate = pooled_gate(store, config, clock)
    unlimited = Subject(tenant, "prod", "spare", "r-p", None, None, {})
    assert gate.pool_check(unlimited) is None and await gate.admit(unlimited, 10**6) is FREE
    # On c, the budget is the undivided limit: the pool's 1% (10 tokens) applies.
    assert (await gate.admit(subject(tenant, "p"), 10)).share is not None
    with pytest.raises(CapacityRefused):
        await gate.admit(subject(tenant, "p"), 1)


async def test_the_pool_counter_is_reconciled_and_refunded_with_the_budget(store: CapacityStore, tenant: str, clock: Clock) -> None:
    """Settling moves the pool's counter to the real usage; a failed leg's refund empties it."""
    gate = pooled_gate(store, pooled_config(tenant, 1000, HIGH_LOW), clock)
    first = await gate.admit(subject(tenant, "high"), 400)
    second = await gate.admit(subject(tenant, "high"), 300)
    await gate.settle(first, Usage(prompt_tokens=50, completion_tokens=20))
    await gate.refund(second)
    assert await pool_tokens(gate, tenant, "high") == 70
