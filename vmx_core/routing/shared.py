"""Upstream outcomes shared through the capacity store: one error rate and one circuit state
for every gateway process that uses the same ``storage.capacity`` (DESIGN §9).

Each process keeps its own breaker state machine (:mod:`~vmx_core.routing.breaker`) and
outcome counters (:mod:`~vmx_core.routing.health`).  When the capacity store is shared (any
``storage.capacity`` but ``memory://``), they also go through a :class:`SharedOutcomes`:

- every outcome is pushed into two counters of the store per connection: one-second buckets
  over the last 10 minutes for circuit breakers, one-minute buckets over the last hour for
  ``error_rate()``;
- the breaker counters of the circuits this process watches are read back every ``REFRESH_S``.

Pushes are batched (one store call per environment and flush, off the request path), so an
outcome costs a request nothing; a breaker decision uses a snapshot at most ``REFRESH_S`` old
plus this process's outcomes since; ``error_rate()`` reads the store when a rule asks.  When
the store fails, the outcomes of that flush are dropped (they are a health signal, not an
account: logged and counted) and each process falls back on what it saw itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote

import structlog
from attrs import define, field

from vmx_core.capacity.limits import tenant_tag
from vmx_core.capacity.store import CapacityStore, CapacityStoreError
from vmx_core.capacity.window import Check, Window

log = structlog.get_logger("vmx.routing")

Key = tuple[str, str, str]
#: bucket -> (calls, failures)
Buckets = Mapping[int, tuple[int, int]]

SECONDS = Window("outcomes-seconds", 600.0, 1.0, 600)
MINUTES = Window("outcomes-minutes", 3600.0, 60.0, 60)
#: How often pushes are flushed and watched circuits read back.
REFRESH_S = 0.5
#: A snapshot older than this (the store stopped answering) is not used: local counts decide.
STALE_S = 5.0


def store_keys(key: Key) -> tuple[str, str]:
    """The seconds and minutes counters of a connection, under its environment's hash tag (so
    one environment's keys can be charged together on Redis Cluster)."""
    ws, env, conn = key
    base = f"vmx:{{{tenant_tag(ws, env)}}}:outcomes:{quote(conn, safe='')}"
    return f"{base}:s", f"{base}:m"


async def read_buckets(store: CapacityStore, reads: list[Check], now: float) -> list[Buckets]:
    """The counted buckets of ``reads``.  The store protocol has no plain read of buckets, but
    a refused admission returns them and charges nothing: ask for one call under a limit of 0."""
    probes = [Check(c.key, c.window, 0, None, 1, 0) for c in reads]
    admission = await store.admit(probes, now)
    return [c.buckets for c in admission.counts]


@define
class _Snapshot:
    at: float
    buckets: Buckets


@define
class SharedOutcomes:
    store: CapacityStore
    clock: Callable[[], float] = time.time
    #: Store calls that failed (outcomes dropped, local counts used meanwhile).
    errors: int = 0
    _seconds: dict[Key, list[int]] = field(factory=dict)  # pushed, not yet flushed
    _minutes: dict[Key, list[int]] = field(factory=dict)
    _watched: set[Key] = field(factory=set)
    _snapshots: dict[Key, _Snapshot] = field(factory=dict)
    _task: asyncio.Task[None] | None = None

    # -- what the breaker and the health counters call (synchronous, no I/O) --------------------

    def push(self, key: Key, failed: bool, *, breaker: bool) -> None:
        """Count one outcome: into the breaker counter (``breaker``) or the error-rate one."""
        cell = (self._seconds if breaker else self._minutes).setdefault(key, [0, 0])
        cell[0] += 1
        cell[1] += 1 if failed else 0

    def watch(self, keys: Iterable[Key]) -> None:
        """Read these circuits' counters back on every refresh."""
        self._watched.update(keys)

    def counts(self, key: Key, window_s: float, after: float = 0.0) -> tuple[int, int] | None:
        """(ok, failed) over the last ``window_s`` seconds (at most 10 minutes) and after the
        wall-clock time ``after``, from every process; None without a fresh snapshot."""
        snap = self._snapshots.get(key)
        now = self.clock()
        if snap is None or now - snap.at > STALE_S:
            return None
        first = max(math.floor(now) - math.ceil(window_s) + 1, math.floor(after) + 1 if after else -math.inf)
        calls = failed = 0
        for b, (c, f) in snap.buckets.items():
            if b >= first:
                calls, failed = calls + c, failed + f
        mine = self._seconds.get(key, (0, 0))  # pushed since the snapshot
        calls, failed = calls + mine[0], failed + mine[1]
        return calls - failed, failed

    # -- what rules and the background loop call ------------------------------------------------

    async def error_rate(self, key: Key, window_minutes: float) -> float | None:
        """Percent of failed calls over the last ``window_minutes`` (the current minute
        included) from every process, or None when the store cannot say."""
        now = self.clock()
        try:
            (buckets,) = await read_buckets(self.store, [Check(store_keys(key)[1], MINUTES, None, None, 0, 0)], now)
        except CapacityStoreError as exc:
            self._failed(exc, "error_rate")
            return None
        first = MINUTES.bucket(now) - max(int(window_minutes), 1) + 1
        calls, failed = self._minutes.get(key, (0, 0))
        for b, (c, f) in buckets.items():
            if b >= first:
                calls, failed = calls + c, failed + f
        return failed / calls * 100 if calls else 0.0

    async def sync(self) -> None:
        """Flush what was pushed, then read the watched circuits back (one call per
        environment each: an admission's keys must share a hash tag)."""
        pushed_s, pushed_m = self._seconds, self._minutes
        self._seconds, self._minutes = {}, {}
        now = self.clock()
        charges: dict[tuple[str, str], list[Check]] = defaultdict(list)
        for pushed, i, window in ((pushed_s, 0, SECONDS), (pushed_m, 1, MINUTES)):
            for key, (calls, failed) in pushed.items():
                charges[key[:2]].append(Check(store_keys(key)[i], window, None, None, calls, failed))
        watched: dict[tuple[str, str], list[Key]] = defaultdict(list)
        for key in self._watched:
            watched[key[:2]].append(key)
        try:
            for checks in charges.values():
                await self.store.admit(checks, now)
            for keys in watched.values():
                reads = [Check(store_keys(k)[0], SECONDS, None, None, 0, 0) for k in keys]
                for key, buckets in zip(keys, await read_buckets(self.store, reads, now), strict=True):
                    self._snapshots[key] = _Snapshot(now, buckets)
        except CapacityStoreError as exc:
            self._failed(exc, "sync")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        """Stop the loop and flush what is left."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sync()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await self.sync()

    def _failed(self, exc: CapacityStoreError, op: str) -> None:
        self.errors += 1
        log.warning("shared_outcomes_store_error", op=op, error=str(exc))
