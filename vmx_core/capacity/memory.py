"""``memory://``: counters in this process, for one gateway process (or an embedding).

Each operation runs without an ``await`` inside, so it is atomic with respect to every other
coroutine on the loop; a lock makes it atomic across threads too (an embedder may run several
loops).  Several gateway processes need a shared store: use Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from attrs import define, evolve, field

from vmx_core.capacity.allocation import UNMET, Decision, PoolCheck, PoolReading, decide
from vmx_core.capacity.store import Adjustment, Admission
from vmx_core.capacity.window import Check, Counts, Window, fits

#: Sweep idle counters every this many operations (keys per source IP would pile up otherwise).
SWEEP_EVERY = 4096


@define
class MemoryStore:
    #: key -> bucket -> [requests, tokens]
    counters: dict[str, dict[int, list[int]]] = field(factory=dict)
    #: key -> when it may be dropped (0: never)
    expires: dict[str, float] = field(factory=dict)
    _lock: threading.Lock = field(factory=threading.Lock)
    _ops: int = 0

    async def admit(self, checks: Sequence[Check], now: float, pool: PoolCheck | None = None) -> Admission:
        with self._lock:
            self._maybe_sweep(now)
            counts = [self._read(c, now) for c in checks]
            limits_ok = all(
                fits(c, n, tokens=pool is None or i != pool.budget) for i, (c, n) in enumerate(zip(checks, counts, strict=True))
            )
            reading, admitted = None, limits_ok
            if pool is not None:
                reading, decision = self._pool_step(checks, counts, pool, now)
                admitted = limits_ok and decision.admitted
            if not admitted:
                if pool is not None and limits_ok and pool.record_unmet:
                    cost = checks[pool.budget].tokens
                    self._charge(pool.unmet_keys[pool.asker], UNMET, now, 1, cost)
                detailed = tuple(self._read(c, now, detail=True) for c in checks)
                if reading is not None:
                    assert pool is not None
                    mine = self._read(self._reader(pool.used_keys[pool.asker], pool.used_window), now, detail=True)
                    reading = evolve(reading, asker_buckets=mine.buckets)
                return Admission(False, detailed, reading)
            for c in checks:
                if c.requests or c.tokens:  # a charge of nothing (a read) creates no bucket, as in Redis
                    self._charge(c.key, c.window, now, c.requests, c.tokens)
            if pool is not None:
                self._charge(pool.used_keys[pool.asker], pool.used_window, now, 1, checks[pool.budget].tokens)
            return Admission(True, tuple(counts), reading)

    def _pool_step(
        self, checks: Sequence[Check], counts: Sequence[Counts], pool: PoolCheck, now: float
    ) -> tuple[PoolReading, Decision]:
        budget = checks[pool.budget]
        assert budget.max_tokens is not None
        used = tuple(self._read(self._reader(k, pool.used_window), now).tokens for k in pool.used_keys)
        unmet = tuple(self._read(self._reader(k, UNMET), now).tokens for k in pool.unmet_keys)
        spent = counts[pool.budget].tokens
        decision = decide(budget.max_tokens, spent, pool.minimums, pool.maximums, used, unmet, pool.asker, budget.tokens)
        return PoolReading(spent, used, unmet), decision

    @staticmethod
    def _reader(key: str, window: Window) -> Check:
        return Check(key, window, None, None, 0, 0)

    def _charge(self, key: str, window: Window, now: float, requests: int, tokens: int) -> None:
        self._add(key, window.bucket(now), requests, tokens)
        ttl = window.ttl_ms()
        self.expires[key] = now + ttl / 1000 if ttl else 0.0

    async def adjust(self, adjustments: Sequence[Adjustment]) -> None:
        with self._lock:
            for a in adjustments:
                buckets = self.counters.get(a.key)
                # Only a bucket that still exists and still counts: reviving a forgotten one
                # would charge a window that no longer holds the admission.
                if buckets is None or a.bucket < a.oldest or a.bucket not in buckets:
                    continue
                self._add(a.key, a.bucket, a.requests, a.tokens)

    async def usage(self, checks: Sequence[Check], now: float) -> tuple[Counts, ...]:
        with self._lock:
            return tuple(self._read(c, now) for c in checks)

    async def aclose(self) -> None:
        return None

    def _read(self, check: Check, now: float, detail: bool = False) -> Counts:
        buckets = self.counters.get(check.key)
        if not buckets:
            return Counts(0, 0)
        oldest = check.window.oldest(now)
        for stale in [b for b in buckets if b < oldest]:
            del buckets[stale]
        r = sum(v[0] for v in buckets.values())
        t = sum(v[1] for v in buckets.values())
        if detail:
            return Counts(r, t, {b: (v[0], v[1]) for b, v in buckets.items()})
        return Counts(r, t)

    def _add(self, key: str, bucket: int, requests: int, tokens: int) -> None:
        cell = self.counters.setdefault(key, {}).setdefault(bucket, [0, 0])
        cell[0] = max(0, cell[0] + requests)
        cell[1] = max(0, cell[1] + tokens)

    def _maybe_sweep(self, now: float) -> None:
        self._ops += 1
        if self._ops % SWEEP_EVERY:
            return
        for key in [k for k, at in self.expires.items() if at and at < now]:
            del self.expires[key]
            self.counters.pop(key, None)
