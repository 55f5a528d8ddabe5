"""Pools of one environment, ready for admission: order, shares in tokens, counter keys, and what
a pool refusal answers (the strategy itself is :mod:`vmx_core.capacity.allocation`).

Built once per config, like the limits index.  A pool gate applies to a leg when its
environment has pools and its connection has a *budget*: a ``minute`` limit on ``tokens`` that
is not split by a dimension (the smallest, if there are several).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from urllib.parse import quote

from attrs import evolve, frozen

from vmx_core.capacity.allocation import Decision, PoolCheck, PoolReading
from vmx_core.capacity.limits import Limit, tenant_tag
from vmx_core.capacity.window import Check, Counts, retry_after
from vmx_core.config.models import PoolConfig

#: How the pool of traffic outside every pool is named in a refusal.
OUTSIDE = "outside pools"


@frozen
class ConnectionShares:
    """The pools on one connection that has a budget."""

    budget: int
    #: Index of the budget among the connection's limits (the gate puts those first).
    budget_index: int
    template: PoolCheck


@frozen
class TenantPools:
    #: Pool names in order of importance; ``None`` is the traffic outside every pool (last).
    names: tuple[str | None, ...]
    max_wait_s: tuple[float, ...]
    of_resource: Mapping[str, int]
    connections: Mapping[str, ConnectionShares]

    @classmethod
    def build(
        cls, workspace: str, environment: str, pools: Sequence[PoolConfig], connection_limits: Mapping[str, Sequence[Limit]]
    ) -> TenantPools | None:
        if not pools:
            return None
        ordered = sorted(pools, key=lambda p: p.rank)  # stable: equal ranks keep the file's order
        names: tuple[str | None, ...] = (*(p.name for p in ordered), None)
        of_resource: dict[str, int] = {}
        for i, p in enumerate(ordered):
            for r in p.resources:
                of_resource.setdefault(r, i)
        tag = tenant_tag(workspace, environment)
        shares = {}
        for conn, limits in connection_limits.items():
            found = budget_of(limits)
            if found is None:
                continue
            index, budget = found
            base = f"vmx:{{{tag}}}:pool:{quote(conn, safe='')}"
            used = tuple(f"{base}:{quote(n, safe='')}:used" if n is not None else f"{base}::outside:used" for n in names)
            template = PoolCheck(
                budget=index,
                asker=0,
                minimums=(*(share(budget, p.min_reservation) for p in ordered), 0),
                maximums=(*(share(budget, p.max_reservation) for p in ordered), budget),
                used_keys=used,
                unmet_keys=tuple(k[: -len(":used")] + ":unmet" for k in used),
                used_window=limits[index].window,
            )
            shares[conn] = ConnectionShares(budget, index, template)
        return cls(names, (*(p.max_wait_ms / 1000 for p in ordered), 0.0), of_resource, shares)

    def pool_of(self, resource: str) -> int:
        return self.of_resource.get(resource, len(self.names) - 1)

    def check(self, connection: str, resource: str, record_unmet: bool = True) -> PoolCheck | None:
        """The pool step for a leg of ``resource`` on ``connection``, or None without a budget."""
        shares = self.connections.get(connection)
        if shares is None:
            return None
        return evolve(shares.template, asker=self.pool_of(resource), record_unmet=record_unmet)

    def describe(self, check: PoolCheck, budget: int, reading: PoolReading, decision: Decision) -> str:
        """A refusal's message: why, and the allocation (this environment's pools only)."""
        p = check.asker
        who = f"pool {self.names[p]!r}" if self.names[p] is not None else "traffic outside every pool"
        if not decision.share_ok:
            why = f"{who} has used {reading.used[p]} of the {decision.allocation[p]} tokens allocated to it"
        else:
            why = f"the rest of the connection's minute token budget is used or held for other pools ({decision.held} tokens held)"
        parts = [
            f"{self.names[q] if self.names[q] is not None else OUTSIDE} {decision.allocation[q]} (used {reading.used[q]})"
            for q in range(len(self.names))
            if decision.demanding(q) or reading.used[q]
        ]
        return (
            f"prioritization gate denied: {why}; allocation of the connection's minute budget of {budget} tokens: "
            + ", ".join(parts)
        )


def budget_of(limits: Sequence[Limit]) -> tuple[int, int] | None:
    """(index, tokens) of the connection's budget: its tightest minute token limit without a
    dimension (a budget split per caller is no budget to share)."""
    best: tuple[int, int] | None = None
    for i, lim in enumerate(limits):
        c = lim.config
        if c.period == "minute" and c.tokens is not None and c.dimension is None and (best is None or c.tokens < best[1]):
            best = (i, c.tokens)
    return best


def share(budget: int, percent: float) -> int:
    """``percent`` of ``budget`` in whole tokens, rounded down, computed on the decimal written
    in the file (so that shares adding up to 100 % never add up to more than the budget)."""
    return math.floor(budget * Fraction(str(percent)) / 100)


def pool_retry_after(check: PoolCheck, budget: int, cost: int, reading: PoolReading, decision: Decision,
                     budget_counts: Counts, now: float) -> float:
    """Seconds until the request would pass the pool gate if nothing else changed: until enough
    of the pool's own tokens leave the window (share), and of the connection's (room)."""
    w = check.used_window
    waits = [0.0]
    if not decision.share_ok:
        alloc = decision.allocation[check.asker]
        mine = Counts(0, reading.used[check.asker], reading.asker_buckets)
        waits.append(retry_after(Check("", w, None, alloc, 0, cost), mine, now))
    if not decision.room_ok:
        room = max(0, budget - decision.held)
        waits.append(retry_after(Check("", w, None, room, 0, cost), budget_counts, now))
    return max(waits)

