"""``memory://``: counters in this process, for one gateway process (or an embedding).

Each operation runs without an ``await`` inside, so it is atomic with respect to every other
coroutine on the loop; a lock makes it atomic across threads too (an embedder may run several
loops).  Several gateway processes need a shared store: use Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from attrs import define, field

from vmx_core.capacity.store import Adjustment, Admission
from vmx_core.capacity.window import Check, Counts, fits

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

    async def admit(self, checks: Sequence[Check], now: float) -> Admission:
        with self._lock:
            self._maybe_sweep(now)
            counts = [self._read(c, now) for c in checks]
            if not all(fits(c, n) for c, n in zip(checks, counts, strict=True)):
                detailed = tuple(self._read(c, now, detail=True) for c in checks)
                return Admission(False, detailed)
            for c in checks:
                if not (c.requests or c.tokens):
                    continue  # a charge of nothing (a read) creates no bucket, as in Redis
                self._add(c.key, c.window.bucket(now), c.requests, c.tokens)
                ttl = c.window.ttl_ms()
                self.expires[c.key] = now + ttl / 1000 if ttl else 0.0
            return Admission(True, tuple(counts))

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
