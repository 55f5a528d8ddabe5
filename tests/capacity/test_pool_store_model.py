"""Hypothesis drives pooled admissions on the memory store and the Redis store (whose Lua
transcribes vmx_core.capacity.allocation): they agree on every answer and every counter."""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from vmx_core.capacity.allocation import UNMET, PoolCheck
from vmx_core.capacity.memory import MemoryStore
from vmx_core.capacity.redis import RedisStore
from vmx_core.capacity.store import Adjustment, CapacityStore
from vmx_core.capacity.window import Check, Window

MINUTE = Window.of("minute")
BUDGET = 1000
MINIMUMS, MAXIMUMS = (300, 200, 100), (1000, 400, 1000)


def test_memory_and_redis_stores_agree_on_pooled_admissions(redis_url: str) -> None:
    """Any sequence of pooled admissions (limit or pool refusals), reconciliations and clock
    moves gives identical admissions, readings and counters on both stores."""
    loop = asyncio.new_event_loop()

    class PoolsAgree(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.prefix = f"vmx:{{p{uuid.uuid4().hex[:8]}}}:"
            self.stores: list[CapacityStore] = [MemoryStore(), RedisStore.from_uri(redis_url)]
            self.now = 1_800_000_000.0
            self.charged: list[tuple[str, int]] = []
            self.used_keys = tuple(f"{self.prefix}pool:{q}:used" for q in range(3))
            self.unmet_keys = tuple(f"{self.prefix}pool:{q}:unmet" for q in range(3))

        def both(self, op: str, *args: object) -> list[object]:
            return [loop.run_until_complete(getattr(s, op)(*args)) for s in self.stores]

        @rule(
            asker=st.integers(0, 2),
            cost=st.sampled_from([0, 20, 50, 100, 150, 300, 500]),
            record=st.booleans(),
            requests_limit=st.sampled_from([None, 4]),
            key_limit=st.booleans(),
        )
        def admit(self, asker: int, cost: int, record: bool, requests_limit: int | None, key_limit: bool) -> None:
            checks = [Check(f"{self.prefix}budget", MINUTE, requests_limit, BUDGET, 1, cost)]
            if key_limit:  # a second limit that may refuse on its own
                checks.append(Check(f"{self.prefix}key", MINUTE, None, 700, 1, cost))
            pool = PoolCheck(0, asker, MINIMUMS, MAXIMUMS, self.used_keys, self.unmet_keys, MINUTE, record)
            mem, red = self.both("admit", checks, self.now, pool)
            assert mem == red
            if mem.admitted:  # type: ignore[attr-defined]
                bucket = MINUTE.bucket(self.now)
                self.charged += [(c.key, bucket) for c in checks] + [(self.used_keys[asker], bucket)]

        @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 3.0, 9.5, 30.0, 61.0]))
        def advance(self, seconds: float) -> None:
            self.now += seconds

        @rule(data=st.data(), tokens=st.integers(-400, 200))
        def adjust(self, data: st.DataObject, tokens: int) -> None:
            if self.charged:
                key, bucket = data.draw(st.sampled_from(self.charged))
                self.both("adjust", [Adjustment(key, bucket, MINUTE.oldest(self.now), 0, tokens, MINUTE.ttl_ms())])

        @invariant()
        def counters_agree(self) -> None:
            reads = [Check(k, MINUTE, None, None, 0, 0) for k in (f"{self.prefix}budget", f"{self.prefix}key", *self.used_keys)]
            reads += [Check(k, UNMET, None, None, 0, 0) for k in self.unmet_keys]
            mem, red = self.both("usage", reads, self.now)
            assert mem == red

        def teardown(self) -> None:
            for s in self.stores:
                loop.run_until_complete(s.aclose())

    try:
        run_state_machine_as_test(
            PoolsAgree,
            settings=settings(max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)),
        )
    finally:
        loop.close()


@st.composite
def pool_states(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], list[int], int, int, int]:
    """Shares, counters and a request: (minimums, maximums, used, unmet, spent, asker, cost)."""
    n = draw(st.integers(1, 4))
    minimums: list[int] = []
    for _ in range(n):
        minimums.append(draw(st.integers(0, BUDGET - sum(minimums))))
    maximums = [draw(st.integers(lo, BUDGET)) for lo in minimums]
    used = draw(st.lists(st.integers(0, 400), min_size=n, max_size=n))
    unmet = draw(st.lists(st.sampled_from([0, 50, 200, 900]), min_size=n, max_size=n))
    # The budget also counts other traffic; mostly near full, where decisions are close.
    spent = draw(st.integers(max(sum(used), BUDGET - 500), max(sum(used), BUDGET) + 50))
    return minimums, maximums, used, unmet, spent, draw(st.integers(0, n - 1)), draw(st.integers(0, 500))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(state=pool_states())
def test_lua_decides_like_python_on_any_state(redis_url: str, state: tuple[list[int], list[int], list[int], list[int], int, int, int]) -> None:
    """Counters set to any state, then one pooled admission: the Redis store (Lua) and the memory
    store (Python) give the same answer, reading and charges."""
    minimums, maximums, used, unmet, spent, asker, cost = state
    prefix = f"vmx:{{s{uuid.uuid4().hex[:8]}}}:"
    used_keys = tuple(f"{prefix}{q}:used" for q in range(len(minimums)))
    unmet_keys = tuple(f"{prefix}{q}:unmet" for q in range(len(minimums)))
    now = 1_800_000_000.0

    async def run(store: CapacityStore) -> list[object]:
        try:
            # The state, charged 10 s earlier (counted, and still in the unmet window).
            seed = [Check(f"{prefix}budget", MINUTE, None, None, 1, spent)]
            seed += [Check(k, MINUTE, None, None, 1, u) for k, u in zip(used_keys, used, strict=True)]
            seed += [Check(k, UNMET, None, None, 1, u) for k, u in zip(unmet_keys, unmet, strict=True)]
            assert (await store.admit(seed, now - 9)).admitted
            pool = PoolCheck(0, asker, tuple(minimums), tuple(maximums), used_keys, unmet_keys, MINUTE)
            admission = await store.admit([Check(f"{prefix}budget", MINUTE, None, BUDGET, 1, cost)], now, pool)
            reads = [Check(k, MINUTE, None, None, 0, 0) for k in (f"{prefix}budget", *used_keys)]
            reads += [Check(k, UNMET, None, None, 0, 0) for k in unmet_keys]
            return [admission, await store.usage(reads, now)]
        finally:
            await store.aclose()

    async def both() -> None:
        memory, redis = await run(MemoryStore()), await run(RedisStore.from_uri(redis_url))
        assert memory == redis

    asyncio.run(both())
