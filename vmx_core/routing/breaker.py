"""The circuit breaker (DESIGN §9): a connection whose error rate over the recent window
passes ``circuit_breaker.threshold`` is skipped for ``cooldown_s``; then one probe request
is let through (half-open) and its outcome closes or re-opens the circuit.

Outcomes are counted in one-second buckets, so memory is bounded by the window, not the
request rate.  With a shared capacity store (``shared``, see :mod:`vmx_core.routing.shared`)
the error rate is every process's: a circuit opens in each process that sees it, even one that
sent nothing to the failing connection.  The state machine (open, cooldown, the half-open
probe) stays per process: after the cooldown each process sends its own probe.
"""

from __future__ import annotations

import time
from collections import deque

from attrs import define, field

from vmx_core.config.models import CircuitBreakerConfig
from vmx_core.routing.shared import SharedOutcomes

Key = tuple[str, str, str]


@define
class _Circuit:
    #: [second, ok, failed] buckets inside the window, oldest first.
    buckets: deque[list[int]] = field(factory=deque)
    open_until: float | None = None
    cooldown_s: float = 0.0
    probe_started: float | None = None
    #: Wall-clock time of this process's last successful probe: shared outcomes from before
    #: it are the failures that opened the circuit, and no longer count here.
    closed_at: float = 0.0


@define
class CircuitBreaker:
    _circuits: dict[Key, _Circuit] = field(factory=dict)
    #: Outcomes shared with the other gateway processes, when the capacity store is shared.
    shared: SharedOutcomes | None = None

    def state(self, key: Key, now: float | None = None) -> str:
        c = self._circuits.get(key)
        now = time.monotonic() if now is None else now
        if c is None or c.open_until is None:
            return "closed"
        return "open" if now < c.open_until else "half-open"

    def allow(self, key: Key, cfg: CircuitBreakerConfig, now: float | None = None) -> bool:
        """Whether a call to the connection may go ahead now."""
        now = time.monotonic() if now is None else now
        c = self._circuits.get(key)
        if c is None:
            if self.shared is None:
                return True
            # Other processes may have seen this connection fail: their outcomes count too.
            c = self._circuits[key] = _Circuit()
            self.shared.watch([key])
        if c.open_until is not None:
            if now < c.open_until:
                return False
            # Half-open: one probe at a time; a probe that never reported back (a cancelled
            # request) is replaced after another cooldown.
            if c.probe_started is not None and now - c.probe_started < max(c.cooldown_s, 1.0):
                return False
            c.probe_started = now
            return True
        ok, failed = self._observed(key, c, cfg, now)
        total = ok + failed
        if total >= cfg.min_requests and failed / total * 100 > cfg.threshold:
            c.open_until, c.cooldown_s, c.probe_started = now + cfg.cooldown_s, cfg.cooldown_s, None
            return False
        return True

    def record(self, key: Key, failed: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        c = self._circuits.setdefault(key, _Circuit())
        if self.shared is not None:
            self.shared.push(key, failed, breaker=True)
        if c.open_until is not None and c.probe_started is not None:
            if failed:
                c.open_until, c.probe_started = now + c.cooldown_s, None
            else:
                # The probe succeeded: close, and forget the failures that opened it.
                c.open_until, c.probe_started = None, None
                c.buckets.clear()
                if self.shared is not None:
                    c.closed_at = self.shared.clock()
            return
        second = int(now)
        if c.buckets and c.buckets[-1][0] == second:
            c.buckets[-1][2 if failed else 1] += 1
        else:
            c.buckets.append([second, 0 if failed else 1, 1 if failed else 0])

    def _observed(self, key: Key, c: _Circuit, cfg: CircuitBreakerConfig, now: float) -> tuple[int, int]:
        """(ok, failed) in the window: every process's when shared (and fresh), else this one's."""
        local = self._counts(c, cfg.window_s, now)
        if self.shared is None:
            return local
        shared = self.shared.counts(key, cfg.window_s, after=c.closed_at)
        return local if shared is None else shared

    @staticmethod
    def _counts(c: _Circuit, window_s: float, now: float) -> tuple[int, int]:
        first = int(now - window_s) + 1
        while c.buckets and c.buckets[0][0] < first:
            c.buckets.popleft()
        return sum(b[1] for b in c.buckets), sum(b[2] for b in c.buckets)
