"""The capacity gate: one atomic admission per leg, then reconciliation or refund.

Per leg the gate charges, in one store call, 1 request and the reserved tokens (estimated input
plus the maximum output) to every limit that applies: the leg's connection, the resource and
the API key.  When the leg finishes, the tokens are reconciled to the real usage; when it fails,
its tokens are given back (and so are the resource's and key's request counts, because the next
leg charges them again: a request that fails over is counted once at those levels).

On a connection with a minute token budget in an environment with pools, the same store call
runs the pool gate (:mod:`vmx_core.capacity.allocation`) and charges the request's pool too; a
request over its pool's share may wait for it up to the pool's ``max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog
from attrs import define, field, frozen
from opentelemetry import metrics

from vmx_core.capacity.allocation import UNMET, PoolCheck, decide
from vmx_core.capacity.limits import Limit, limits_of
from vmx_core.capacity.pools import TenantPools, pool_retry_after
from vmx_core.capacity.store import Adjustment, Admission, CapacityStore, CapacityStoreError
from vmx_core.capacity.window import Check, Counts, Remaining, fits, retry_after, retry_after_header
from vmx_core.config.models import CapacitySettings, VmxConfig
from vmx_core.errors import CapacityExhausted, PrioritizationDenied
from vmx_core.wire.usage import Usage

log = structlog.get_logger("vmx.capacity")
_store_errors = metrics.get_meter("vmx").create_counter(
    "vmx.capacity.store_errors", description="capacity store calls that failed (on_store_error applied)"
)
_pool_denials = metrics.get_meter("vmx").create_counter(
    "vmx.capacity.pool_denials", description="legs refused by the prioritization gate (after any wait)"
)
#: The shortest pause between two admission attempts of a waiting request: a Retry-After of
#: 0 (a bucket about to leave the window) must not turn the wait into a busy loop.
MIN_POLL_S = 0.05
#: How often a waiting request renews its unmet demand: well inside the unmet window.
RENEW_S = UNMET.seconds / 2


class CapacityRefused(CapacityExhausted):
    """429 ``resource_exhausted``.  ``connection_only``: only the leg's connection refused, so
    another leg (another connection) may still be admitted (DESIGN §9)."""

    def __init__(self, message: str, *, headers: Mapping[str, str], connection_only: bool) -> None:
        super().__init__(message, headers=headers)
        self.connection_only = connection_only


class PoolRefused(PrioritizationDenied, CapacityRefused):
    """429 ``prioritization_gate_denied``: the leg's pool is over its share of the connection's
    budget.  It concerns that connection only, so the next leg may still be admitted."""

    def __init__(self, message: str, *, headers: Mapping[str, str], wait: float) -> None:
        super().__init__(message, headers=headers, connection_only=True)
        #: Seconds until the leg would pass (the Retry-After before rounding).
        self.wait = wait


# ``@define`` rather than ``@frozen``: one is made per leg, and a frozen class's ``__init__`` sets each
# field through ``object.__setattr__``, several times the cost of a plain slot store (issue 9).
# Never mutated.
@define
class Subject:
    """Who asks: everything the gate needs from a request, and nothing else."""

    workspace: str
    environment: str
    connection: str
    resource: str
    api_key: str | None
    source_ip: str | None
    metadata: Mapping[str, str]


# ``@define`` rather than ``@frozen``: one is made per leg, and a frozen class's ``__init__`` sets each
# field through ``object.__setattr__``, several times the cost of a plain slot store (issue 9).
# Never mutated.
@define
class Ticket:
    """What one admitted leg charged, so that it can be reconciled or refunded."""

    limits: tuple[Limit, ...]
    checks: tuple[Check, ...]
    #: When it was admitted: each check was charged in its window's bucket of this time.
    now: float
    reserved: int
    remaining: Remaining
    #: (pool counter, index of the budget check) when a pool gate applied: the pool's counter
    #: was charged with the budget's tokens, in the same window and bucket.
    share: tuple[str, int] | None = None

    def headers(self) -> dict[str, str]:
        return self.remaining.headers()


#: Charged to nothing: what an admission is when there is no limit or the store is down.
FREE = Ticket((), (), 0.0, 0, Remaining())


@frozen
class TenantLimits:
    connections: Mapping[str, tuple[Limit, ...]]
    resources: Mapping[str, tuple[Limit, ...]]
    api_keys: Mapping[str, tuple[Limit, ...]]
    pools: TenantPools | None = None


def index_limits(config: VmxConfig) -> dict[tuple[str, str], TenantLimits]:
    out = {}
    for ws, wcfg in config.workspaces.items():
        for env, ecfg in wcfg.environments.items():
            conns = {n: limits_of(ws, env, "connection", n, c.capacity) for n, c in ecfg.connections.items() if c.capacity}
            out[(ws, env)] = TenantLimits(
                conns,
                {n: limits_of(ws, env, "resource", n, r.capacity) for n, r in ecfg.resources.items() if r.capacity},
                {n: limits_of(ws, env, "api_key", n, k.capacity) for n, k in ecfg.api_keys.items() if k.capacity},
                TenantPools.build(ws, env, ecfg.pools, conns),
            )
    return out


class _Plan:
    """What the gate needs of one (tenant, connection, resource, API key), worked out once: the
    limits that apply and what about them is the same for every request.  A plain class: it is
    built once per such combination, and read on every admission."""

    __slots__ = ("keys", "limits", "needs_tokens", "pooled")

    def __init__(self, limits: tuple[Limit, ...], pooled: bool) -> None:
        self.limits = limits
        self.needs_tokens = any(lim.config.tokens is not None for lim in limits)
        #: Each limit's counter key when it has no dimension (then the key is its prefix for
        #: every request), else None (it depends on the request).
        self.keys = tuple(lim.prefix if lim.config.dimension is None else None for lim in limits)
        self.pooled = pooled

    def checks(self, s: Subject, tokens: int) -> tuple[Check, ...]:
        """``Limit.check`` of every limit, without working out the fixed keys again."""
        return tuple([  # a list comprehension: cheaper than a generator's frame per item
            Check(key, lim.window, lim.config.requests, lim.config.tokens, 1, tokens) if key is not None
            else lim.check(s.source_ip, s.metadata, tokens)
            for lim, key in zip(self.limits, self.keys, strict=True)
        ])


_NO_PLAN = _Plan((), False)
#: Plans kept at most (one per tenant, connection, resource and key the config combines; the
#: bound only matters for a config that names millions of them).
_MOST_PLANS = 65_536


@define
class Gate:
    store: CapacityStore
    settings: CapacitySettings = field(factory=CapacitySettings)
    tenants: Mapping[tuple[str, str], TenantLimits] = field(factory=dict)
    clock: Callable[[], float] = time.time
    #: How a request waiting for its pool's share pauses (tests pass one that moves their clock).
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: Store calls that failed (also counted as the OTel counter vmx.capacity.store_errors).
    store_errors: int = 0
    #: Legs refused by the pool gate (also the OTel counter vmx.capacity.pool_denials).
    pool_denials: int = 0
    #: (workspace, environment, connection, resource, API key) -> its plan; ``tenants`` is
    #: fixed for a gate's life (a reload builds a new gate).
    _plans: dict[tuple[str, str, str, str, str | None], _Plan] = field(factory=dict)

    @classmethod
    def build(cls, config: VmxConfig, store: CapacityStore, clock: Callable[[], float] = time.time) -> Gate:
        return cls(store, config.capacity, index_limits(config), clock)

    def limits(self, s: Subject) -> tuple[Limit, ...]:
        return self._plan(s).limits

    def needs_tokens(self, s: Subject) -> bool:
        return self._plan(s).needs_tokens

    def _plan(self, s: Subject) -> _Plan:
        ident = (s.workspace, s.environment, s.connection, s.resource, s.api_key)
        plan = self._plans.get(ident)
        if plan is None:
            t = self.tenants.get((s.workspace, s.environment))
            if t is None:
                return _NO_PLAN
            found = t.connections.get(s.connection, ()) + t.resources.get(s.resource, ())
            if s.api_key is not None:
                found += t.api_keys.get(s.api_key, ())
            if len(self._plans) >= _MOST_PLANS:
                self._plans.clear()
            plan = self._plans[ident] = _Plan(found, t.pools is not None)
        return plan

    def pool_check(self, s: Subject, record_unmet: bool = True) -> PoolCheck | None:
        """The pool step of a leg, when its environment has pools and its connection a budget."""
        t = self.tenants.get((s.workspace, s.environment))
        if t is None or t.pools is None:
            return None
        return t.pools.check(s.connection, s.resource, record_unmet)

    async def admit(self, s: Subject, tokens: int, patience: float = 0.0) -> Ticket:
        """Charge every applicable limit (and the leg's pool) or none; raise
        :class:`CapacityRefused` if a limit is full, :class:`PoolRefused` if the pool gate
        still refuses after waiting up to ``min(pool's max_wait_ms, patience)`` seconds."""
        plan = self._plan(s)
        limits = plan.limits
        if not limits:
            return FREE
        checks = plan.checks(s, tokens)
        pool = self.pool_check(s) if plan.pooled else None
        if pool is None:
            # The usual case, without a pool gate: one store call, nothing to wait for.  The
            # call keeps the two-argument form plugin stores written before pools implement.
            now = self.clock()
            try:
                admission = await self.store.admit(checks, now)
            except CapacityStoreError as exc:
                return self._store_failed(exc, "admit")
            if not admission.admitted:
                raise self._refusal(limits, checks, admission.counts, now)
            remaining = Remaining.tightest(checks, admission.counts, charged=True)
            return Ticket(limits, checks, now, tokens, remaining)
        # A pooled leg: it may wait for its share of the pool.
        waited_until = self.clock() + min(self._max_wait(s), patience)
        recorded = self.clock()
        claims: list[float] = []  # when this request recorded unmet demand
        while True:
            now = self.clock()
            try:
                admission = await self.store.admit(checks, now, pool)
            except CapacityStoreError as exc:
                return self._store_failed(exc, "admit")
            if admission.admitted:
                remaining = Remaining.tightest(checks, admission.counts, charged=True)
                share = (pool.used_keys[pool.asker], pool.budget)
                if claims:
                    await self._withdraw(pool, claims, tokens, now)
                return Ticket(limits, checks, now, tokens, remaining, share)
            if not _limits_fit(checks, admission.counts, pool):
                raise self._refusal(limits, checks, admission.counts, now)
            refused = self._pool_refusal(s, checks, admission, pool, now)
            if pool.record_unmet:
                claims.append(now)
            left = waited_until - self.clock()
            if left <= 0:
                self.pool_denials += 1
                _pool_denials.add(1)
                raise refused
            # Poll when the share should be free, but at least every RENEW_S: the wait renews its
            # claim (its unmet demand) before the unmet window forgets it, so what it waits for
            # stays held for it; in between, polls do not pile up demand (one request, one claim).
            await self.sleep(min(left, RENEW_S, max(MIN_POLL_S, refused.wait)))
            renew = self.clock() - recorded >= RENEW_S - MIN_POLL_S  # (a real sleep may end a hair early)
            if renew:
                recorded = self.clock()
            renewed = self.pool_check(s, record_unmet=renew)
            assert renewed is not None  # the gate's tenants are fixed: a pooled leg stays pooled
            pool = renewed

    async def settle(self, ticket: Ticket, usage: Usage | None) -> None:
        """Reconcile the reservation to the real usage (nothing to do when it is unknown:
        the reservation, an upper estimate, stays charged)."""
        if usage is None or not ticket.checks:
            return
        delta = self.charged_tokens(usage) - ticket.reserved
        if delta:
            await self._adjust(ticket, delta, refund=False)

    async def refund(self, ticket: Ticket) -> None:
        """A failed leg: give its tokens back, and the request count of every level but the
        connection's (the upstream call did happen; the next leg charges the rest again)."""
        if ticket.checks:
            await self._adjust(ticket, -ticket.reserved, refund=True)

    def charged_tokens(self, usage: Usage) -> int:
        prompt = usage.prompt_tokens
        if not self.settings.count_cached_tokens:
            prompt -= usage.cached_tokens
        return max(0, prompt) + usage.completion_tokens

    async def usage(self, s: Subject, period: str) -> tuple[Sequence[Limit], tuple[Counts, ...]]:
        """The connection's limits of ``period`` and their counted sums (for capacity_usage())."""
        t = self.tenants.get((s.workspace, s.environment))
        limits = [lim for lim in (t.connections.get(s.connection, ()) if t else ()) if lim.config.period == period]
        if not limits:
            return [], ()
        checks = [lim.check(s.source_ip, s.metadata, 0) for lim in limits]
        try:
            return limits, await self.store.usage(checks, self.clock())
        except CapacityStoreError as exc:
            self._count_error(exc, "usage")
            return [], ()

    async def _adjust(self, ticket: Ticket, tokens: int, *, refund: bool) -> None:
        """Move ``tokens`` on every limit that counts tokens; a ``refund`` also takes back the
        request at every level but the connection's."""
        now = self.clock()
        adjustments = []
        # Each bucket is worked out here rather than kept from the admission: only the counters
        # that move need theirs, and a reconciliation moves the token counters only.
        for lim, check in zip(ticket.limits, ticket.checks, strict=True):
            dr = -1 if refund and lim.level != "connection" else 0
            dt = tokens if check.max_tokens is not None else 0
            if dr or dt:
                w = check.window
                adjustments.append(Adjustment(check.key, w.bucket(ticket.now), w.oldest(now), dr, dt, w.ttl_ms()))
        if ticket.share is not None and tokens:
            # The pool's counter moves with the connection's budget: same tokens, same bucket.
            key, budget = ticket.share
            w = ticket.checks[budget].window
            adjustments.append(Adjustment(key, w.bucket(ticket.now), w.oldest(now), 0, tokens, w.ttl_ms()))
        try:
            await self.store.adjust(adjustments)
        except CapacityStoreError as exc:
            self._count_error(exc, "adjust")

    def _refusal(self, limits: Sequence[Limit], checks: Sequence[Check], counts: Sequence[Counts], now: float) -> CapacityRefused:
        refused = [i for i, (c, n) in enumerate(zip(checks, counts, strict=True)) if not fits(c, n)]
        wait = max(retry_after(checks[i], counts[i], now) for i in refused)
        first = limits[refused[0]]
        what = "requests" if not _fits_requests(checks[refused[0]], counts[refused[0]]) else "tokens"
        headers = Remaining.tightest(checks, counts, charged=False).headers()
        headers["retry-after"] = retry_after_header(wait)
        message = f"capacity exhausted: {first.describe()} on {what} is reached; retry after {headers['retry-after']} s"
        return CapacityRefused(
            message, headers=headers, connection_only=all(limits[i].level == "connection" for i in refused)
        )

    async def _withdraw(self, pool: PoolCheck, claims: Sequence[float], tokens: int, now: float) -> None:
        """A request admitted after waiting no longer waits: take back the unmet demand it
        recorded, so that its pool stops holding room for it."""
        key = pool.unmet_keys[pool.asker]
        adjustments = [Adjustment(key, UNMET.bucket(at), UNMET.oldest(now), -1, -tokens, UNMET.ttl_ms()) for at in claims]
        try:
            await self.store.adjust(adjustments)
        except CapacityStoreError as exc:
            self._count_error(exc, "adjust")

    def _max_wait(self, s: Subject) -> float:
        t = self.tenants[(s.workspace, s.environment)]
        assert t.pools is not None
        return t.pools.max_wait_s[t.pools.pool_of(s.resource)]

    def _pool_refusal(self, s: Subject, checks: Sequence[Check], admission: Admission, pool: PoolCheck, now: float) -> PoolRefused:
        pools = self.tenants[(s.workspace, s.environment)].pools
        reading = admission.pool
        assert pools is not None and reading is not None
        budget_check = checks[pool.budget]
        budget, cost = budget_check.max_tokens or 0, budget_check.tokens
        decision = decide(budget, reading.spent, pool.minimums, pool.maximums, reading.used, reading.unmet, pool.asker, cost)
        wait = pool_retry_after(pool, budget, cost, reading, decision, admission.counts[pool.budget], now)
        headers = Remaining.tightest(checks, admission.counts, charged=False).headers()
        # The tightest token limit is the pool's share: what the pool may still be admitted now.
        alloc = decision.allocation[pool.asker]
        room = budget - reading.spent - decision.held
        headers["x-ratelimit-limit-tokens"] = str(alloc)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, min(alloc - reading.used[pool.asker], room)))
        headers["retry-after"] = retry_after_header(wait)
        message = pools.describe(pool, budget, reading, decision) + f"; retry after {headers['retry-after']} s"
        return PoolRefused(message, headers=headers, wait=wait)

    def _store_failed(self, exc: CapacityStoreError, op: str) -> Ticket:
        self._count_error(exc, op)
        if self.settings.on_store_error == "deny":
            raise CapacityRefused(
                "capacity exhausted: the capacity store is unavailable and capacity.on_store_error is deny",
                headers={"retry-after": "1"},
                connection_only=False,
            )
        return FREE

    def _count_error(self, exc: CapacityStoreError, op: str) -> None:
        self.store_errors += 1
        _store_errors.add(1, {"vmx.capacity.op": op, "vmx.capacity.on_store_error": self.settings.on_store_error})
        log.warning("capacity_store_error", op=op, error=str(exc), on_store_error=self.settings.on_store_error)


def _limits_fit(checks: Sequence[Check], counts: Sequence[Counts], pool: PoolCheck) -> bool:
    """Whether every limit fitted, the budget's tokens aside (those are the pool gate's)."""
    return all(fits(c, n, tokens=i != pool.budget) for i, (c, n) in enumerate(zip(checks, counts, strict=True)))


def _fits_requests(check: Check, counts: Counts) -> bool:
    return check.max_requests is None or counts.requests + check.requests <= check.max_requests
