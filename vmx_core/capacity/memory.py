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
class _Series:
    """One key's buckets, with their running sums: an admission reads several limits of up to
    61 buckets each, and summing them every time was the store's largest cost (issue 9)."""

    #: bucket -> [requests, tokens]
    buckets: dict[int, list[int]] = field(factory=dict)
    requests: int = 0
    tokens: int = 0
    #: No bucket below this one is held (so nothing is stale while it is >= the oldest).
    lowest: int = 0

    def forget_before(self, oldest: int) -> None:
        if self.lowest >= oldest:
            return
        for stale in [b for b in self.buckets if b < oldest]:
            r, t = self.buckets.pop(stale)
            self.requests -= r
            self.tokens -= t
        self.lowest = min(self.buckets, default=oldest)

    def add(self, bucket: int, requests: int, tokens: int) -> None:
        cell = self.buckets.get(bucket)
        if cell is None:
            cell = self.buckets[bucket] = [0, 0]
            if len(self.buckets) == 1 or bucket < self.lowest:
                self.lowest = bucket
        was_r, was_t = cell
        r, t = was_r + requests, was_t + tokens
        if r < 0:
            r = 0
        if t < 0:
            t = 0
        self.requests += r - was_r
        self.tokens += t - was_t
        cell[0], cell[1] = r, t


@define
class MemoryStore:
    counters: dict[str, _Series] = field(factory=dict)
    #: key -> when it may be dropped (0: never)
    expires: dict[str, float] = field(factory=dict)
    _lock: threading.Lock = field(factory=threading.Lock)
    _ops: int = 0

    async def admit(self, checks: Sequence[Check], now: float, pool: PoolCheck | None = None) -> Admission:
        with self._lock:
            self._maybe_sweep(now)
            if pool is None:
                return self._admit(checks, now)
            counts = [self._read(c, now) for c in checks]
            limits_ok = all(fits(c, n, tokens=i != pool.budget) for i, (c, n) in enumerate(zip(checks, counts, strict=True)))
            reading, decision = self._pool_step(checks, counts, pool, now)
            if not (limits_ok and decision.admitted):
                if limits_ok and pool.record_unmet:
                    cost = checks[pool.budget].tokens
                    self._charge(pool.unmet_keys[pool.asker], UNMET, now, 1, cost)
                detailed = tuple(self._read(c, now, detail=True) for c in checks)
                mine = self._read(self._reader(pool.used_keys[pool.asker], pool.used_window), now, detail=True)
                return Admission(False, detailed, evolve(reading, asker_buckets=mine.buckets))
            for c in checks:
                if c.requests or c.tokens:  # a charge of nothing (a read) creates no bucket, as in Redis
                    self._charge(c.key, c.window, now, c.requests, c.tokens)
            self._charge(pool.used_keys[pool.asker], pool.used_window, now, 1, checks[pool.budget].tokens)
            return Admission(True, tuple(counts), reading)

    def _admit(self, checks: Sequence[Check], now: float) -> Admission:
        """An admission without a pool gate, each check's buckets worked out once for its read
        and its charge (the usual case; the pooled one reads the same way through ``_read``)."""
        counts = []
        charges: list[tuple[Check, _Series | None, int]] = []
        for c in checks:
            oldest, bucket = c.window.span(now)
            series = self.counters.get(c.key)
            if series is None or not series.buckets:
                n = Counts(0, 0)
            else:
                if series.lowest < oldest:  # (forget_before's own test, without its call)
                    series.forget_before(oldest)
                n = Counts(series.requests, series.tokens)
            if not fits(c, n):
                return Admission(False, tuple(self._read(d, now, detail=True) for d in checks))
            counts.append(n)
            if c.requests or c.tokens:  # a charge of nothing (a read) creates no bucket, as in Redis
                charges.append((c, series, bucket))
        # Charged only once every check was read: a charge must not count in another's read.
        for c, series, bucket in charges:
            if series is None:  # a new counter (created once, should two checks share its key)
                self._add(c.key, bucket, c.requests, c.tokens)
            else:
                series.add(bucket, c.requests, c.tokens)
            ttl = c.window.ttl_ms()
            self.expires[c.key] = now + ttl / 1000 if ttl else 0.0
        return Admission(True, tuple(counts))

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
                series = self.counters.get(a.key)
                # Only a bucket that still exists and still counts: reviving a forgotten one
                # would charge a window that no longer holds the admission.
                if series is None or a.bucket < a.oldest or a.bucket not in series.buckets:
                    continue
                series.add(a.bucket, a.requests, a.tokens)

    async def usage(self, checks: Sequence[Check], now: float) -> tuple[Counts, ...]:
        with self._lock:
            return tuple(self._read(c, now) for c in checks)

    async def aclose(self) -> None:
        return None

    def _read(self, check: Check, now: float, detail: bool = False) -> Counts:
        series = self.counters.get(check.key)
        if series is None or not series.buckets:
            return Counts(0, 0)
        series.forget_before(check.window.oldest(now))
        if detail:
            return Counts(series.requests, series.tokens, {b: (v[0], v[1]) for b, v in series.buckets.items()})
        return Counts(series.requests, series.tokens)

    def _add(self, key: str, bucket: int, requests: int, tokens: int) -> None:
        series = self.counters.get(key)
        if series is None:
            series = self.counters[key] = _Series()
        series.add(bucket, requests, tokens)

    def _maybe_sweep(self, now: float) -> None:
        self._ops += 1
        if self._ops % SWEEP_EVERY:
            return
        for key in [k for k, at in self.expires.items() if at and at < now]:
            del self.expires[key]
            self.counters.pop(key, None)
