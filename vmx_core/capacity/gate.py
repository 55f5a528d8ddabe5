"""The capacity gate: one atomic admission per leg, then reconciliation or refund.

Per leg the gate charges, in one store call, 1 request and the reserved tokens (estimated input
plus the maximum output) to every limit that applies: the leg's connection, the resource and
the API key.  When the leg finishes, the tokens are reconciled to the real usage; when it fails,
its tokens are given back (and so are the resource's and key's request counts, because the next
leg charges them again: a request that fails over is counted once at those levels).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import structlog
from attrs import define, field, frozen
from opentelemetry import metrics

from vmx_core.capacity.limits import Limit, limits_of
from vmx_core.capacity.store import Adjustment, CapacityStore, CapacityStoreError
from vmx_core.capacity.window import Check, Counts, Remaining, fits, retry_after, retry_after_header
from vmx_core.config.models import CapacitySettings, VmxConfig
from vmx_core.errors import CapacityExhausted
from vmx_core.wire.usage import Usage

log = structlog.get_logger("vmx.capacity")
_store_errors = metrics.get_meter("vmx").create_counter(
    "vmx.capacity.store_errors", description="capacity store calls that failed (on_store_error applied)"
)


class CapacityRefused(CapacityExhausted):
    """429 ``resource_exhausted``.  ``connection_only``: only the leg's connection refused, so
    another leg (another connection) may still be admitted (DESIGN §9)."""

    def __init__(self, message: str, *, headers: Mapping[str, str], connection_only: bool) -> None:
        super().__init__(message, headers=headers)
        self.connection_only = connection_only


@frozen
class Subject:
    """Who asks: everything the gate needs from a request, and nothing else."""

    workspace: str
    environment: str
    connection: str
    resource: str
    api_key: str | None
    source_ip: str | None
    metadata: Mapping[str, str]


@frozen
class Ticket:
    """What one admitted leg charged, so that it can be reconciled or refunded."""

    limits: tuple[Limit, ...]
    checks: tuple[Check, ...]
    buckets: tuple[int, ...]
    now: float
    reserved: int
    remaining: Remaining

    def headers(self) -> dict[str, str]:
        return self.remaining.headers()


#: Charged to nothing: what an admission is when there is no limit or the store is down.
FREE = Ticket((), (), (), 0.0, 0, Remaining())


@frozen
class TenantLimits:
    connections: Mapping[str, tuple[Limit, ...]]
    resources: Mapping[str, tuple[Limit, ...]]
    api_keys: Mapping[str, tuple[Limit, ...]]


def index_limits(config: VmxConfig) -> dict[tuple[str, str], TenantLimits]:
    out = {}
    for ws, wcfg in config.workspaces.items():
        for env, ecfg in wcfg.environments.items():
            out[(ws, env)] = TenantLimits(
                {n: limits_of(ws, env, "connection", n, c.capacity) for n, c in ecfg.connections.items() if c.capacity},
                {n: limits_of(ws, env, "resource", n, r.capacity) for n, r in ecfg.resources.items() if r.capacity},
                {n: limits_of(ws, env, "api_key", n, k.capacity) for n, k in ecfg.api_keys.items() if k.capacity},
            )
    return out


@define
class Gate:
    store: CapacityStore
    settings: CapacitySettings = field(factory=CapacitySettings)
    tenants: Mapping[tuple[str, str], TenantLimits] = field(factory=dict)
    clock: Callable[[], float] = time.time
    #: Store calls that failed (also counted as the OTel counter vmx.capacity.store_errors).
    store_errors: int = 0

    @classmethod
    def build(cls, config: VmxConfig, store: CapacityStore, clock: Callable[[], float] = time.time) -> Gate:
        return cls(store, config.capacity, index_limits(config), clock)

    def limits(self, s: Subject) -> tuple[Limit, ...]:
        t = self.tenants.get((s.workspace, s.environment))
        if t is None:
            return ()
        found = t.connections.get(s.connection, ()) + t.resources.get(s.resource, ())
        if s.api_key is not None:
            found += t.api_keys.get(s.api_key, ())
        return found

    def needs_tokens(self, s: Subject) -> bool:
        return any(lim.config.tokens is not None for lim in self.limits(s))

    async def admit(self, s: Subject, tokens: int) -> Ticket:
        """Charge every applicable limit or none; raise :class:`CapacityRefused` if any is full."""
        limits = self.limits(s)
        if not limits:
            return FREE
        checks = tuple(lim.check(s.source_ip, s.metadata, tokens) for lim in limits)
        now = self.clock()
        try:
            admission = await self.store.admit(checks, now)
        except CapacityStoreError as exc:
            return self._store_failed(exc, "admit")
        if admission.admitted:
            remaining = Remaining.tightest(checks, admission.counts, charged=True)
            buckets = tuple(c.window.bucket(now) for c in checks)
            return Ticket(limits, checks, buckets, now, tokens, remaining)
        raise self._refusal(limits, checks, admission.counts, now)

    async def settle(self, ticket: Ticket, usage: Usage | None) -> None:
        """Reconcile the reservation to the real usage (nothing to do when it is unknown:
        the reservation, an upper estimate, stays charged)."""
        if usage is None or not ticket.checks:
            return
        delta = self.charged_tokens(usage) - ticket.reserved
        if delta:
            await self._adjust(ticket, lambda lim: (0, delta))

    async def refund(self, ticket: Ticket) -> None:
        """A failed leg: give its tokens back, and the request count of every level but the
        connection's (the upstream call did happen; the next leg charges the rest again)."""
        if ticket.checks:
            await self._adjust(ticket, lambda lim: (0 if lim.level == "connection" else -1, -ticket.reserved))

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

    async def _adjust(self, ticket: Ticket, delta: Callable[[Limit], tuple[int, int]]) -> None:
        now = self.clock()
        adjustments = []
        for lim, check, bucket in zip(ticket.limits, ticket.checks, ticket.buckets, strict=True):
            dr, dt = delta(lim)
            if check.max_tokens is None:
                dt = 0
            if dr or dt:
                w = check.window
                adjustments.append(Adjustment(check.key, bucket, w.oldest(now), dr, dt, w.ttl_ms()))
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


def _fits_requests(check: Check, counts: Counts) -> bool:
    return check.max_requests is None or counts.requests + check.requests <= check.max_requests
