"""Per-connection outcome counters in one-minute buckets: the data behind ``error_rate()``.
In-process; with a shared capacity store (``shared``, :mod:`vmx_core.routing.shared`) the rate
a rule reads is every gateway process's.

Only the upstream's own failures count (connection errors, timeouts, stalls, a refused
credential, 408, 429, 5xx): a
client's bad request and the gateway's own capacity refusals say nothing about the upstream's
health, and counting them would let self-inflicted throttling trip routing rules.
"""

from __future__ import annotations

import time
from collections import defaultdict

from attrs import define, field

from vmx_core.audit.record import Attempt
from vmx_core.routing.shared import SharedOutcomes

Key = tuple[str, str, str]
#: Buckets older than this are dropped.
KEEP_MINUTES = 60

_HEALTH_FAILURES = frozenset({"connection_error", "timeout", "stream_stalled", "protocol_error"})


def is_upstream_failure(attempt: Attempt) -> bool | None:
    """True/False for a counted outcome, None for one that says nothing about health."""
    if attempt.reason is None:
        return False
    if attempt.reason in _HEALTH_FAILURES:
        return True
    if attempt.reason == "http_error" and attempt.status is not None:
        return attempt.status in (401, 403, 408, 429) or attempt.status >= 500
    return None


@define
class ConnectionHealth:
    #: key -> {minute: [ok, failed]}
    _buckets: dict[Key, dict[int, list[int]]] = field(factory=lambda: defaultdict(dict))
    #: Outcomes shared with the other gateway processes, when the capacity store is shared.
    shared: SharedOutcomes | None = None

    def record(self, workspace: str, environment: str, attempt: Attempt, now: float | None = None) -> None:
        failed = is_upstream_failure(attempt)
        if failed is None:
            return
        if self.shared is not None:
            self.shared.push((workspace, environment, attempt.connection), failed, breaker=False)
        minute = int((now if now is not None else time.time()) // 60)
        buckets = self._buckets[(workspace, environment, attempt.connection)]
        counts = buckets.get(minute)
        if counts is None:
            counts = buckets[minute] = [0, 0]
            for old in [m for m in buckets if m <= minute - KEEP_MINUTES]:
                del buckets[old]
        counts[1 if failed else 0] += 1

    def error_rate(self, key: Key, window_minutes: float, now: float | None = None) -> float:
        """Percent of failed calls over the last ``window_minutes`` (current minute included)."""
        minute = int((now if now is not None else time.time()) // 60)
        first = minute - max(int(window_minutes), 1) + 1
        ok = failed = 0
        for m, (o, f) in self._buckets.get(key, {}).items():
            if m >= first:
                ok, failed = ok + o, failed + f
        total = ok + failed
        return failed / total * 100 if total else 0.0

    async def rate(self, key: Key, window_minutes: float) -> float:
        """What ``error_rate()`` answers: every process's rate when shared (and the store
        answers), else this process's."""
        if self.shared is not None:
            shared = await self.shared.error_rate(key, window_minutes)
            if shared is not None:
                return shared
        return self.error_rate(key, window_minutes)
