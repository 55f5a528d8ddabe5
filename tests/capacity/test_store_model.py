"""Hypothesis drives the memory store and the Redis store with the same operations: they agree."""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from vmx_core.capacity.memory import MemoryStore
from vmx_core.capacity.redis import RedisStore
from vmx_core.capacity.store import Adjustment, CapacityStore
from vmx_core.capacity.window import Check, Window

WINDOWS = [Window.of("minute"), Window.of("hour"), Window.of("lifetime")]
LIMITS = [(3, None), (None, 500), (5, 800)]


def test_memory_and_redis_stores_agree_on_every_operation(redis_url: str) -> None:
    """Any sequence of admissions, adjustments and clock moves gives identical answers."""
    loop = asyncio.new_event_loop()

    class StoresAgree(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.prefix = f"vmx:{{m{uuid.uuid4().hex[:8]}}}:"
            self.stores: list[CapacityStore] = [MemoryStore(), RedisStore.from_uri(redis_url)]
            self.now = 1_800_000_000.0
            self.charged: list[tuple[str, Window, int]] = []

        def checks(self, which: list[int], cost: int) -> list[Check]:
            return [
                Check(f"{self.prefix}{i}", WINDOWS[i], LIMITS[i][0], LIMITS[i][1], 1, cost) for i in which
            ]

        def both(self, op: str, *args: object) -> list[object]:
            return [loop.run_until_complete(getattr(s, op)(*args)) for s in self.stores]

        @rule(which=st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True), cost=st.integers(0, 300))
        def admit(self, which: list[int], cost: int) -> None:
            mem, red = self.both("admit", self.checks(which, cost), self.now)
            assert mem == red
            if mem.admitted:  # type: ignore[attr-defined]
                for i in which:
                    self.charged.append((f"{self.prefix}{i}", WINDOWS[i], WINDOWS[i].bucket(self.now)))

        @rule(seconds=st.floats(0, 4000, allow_nan=False))
        def advance(self, seconds: float) -> None:
            self.now += seconds

        @rule(data=st.data(), requests=st.integers(-2, 1), tokens=st.integers(-400, 400))
        def adjust(self, data: st.DataObject, requests: int, tokens: int) -> None:
            if not self.charged:
                return
            key, window, bucket = data.draw(st.sampled_from(self.charged))
            adj = Adjustment(key, bucket, window.oldest(self.now), requests, tokens, window.ttl_ms())
            self.both("adjust", [adj])

        @invariant()
        def usage_agrees(self) -> None:
            mem, red = self.both("usage", self.checks([0, 1, 2], 0), self.now)
            assert mem == red

        def teardown(self) -> None:
            for s in self.stores:
                loop.run_until_complete(s.aclose())

    try:
        run_state_machine_as_test(
            StoresAgree,
            settings=settings(
                max_examples=50, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
            ),
        )
    finally:
        loop.close()
