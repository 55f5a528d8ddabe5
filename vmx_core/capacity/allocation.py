"""Prioritization pools: how one connection's minute token budget is shared (DESIGN §10).

This module is the strategy, apart from the stores (as :mod:`~vmx_core.capacity.window` is for
limits): :func:`decide` is the whole decision; the memory store calls it and ``lua/admit.lua``
transcribes it line for line, inside the same atomic admission as the limits.

Pools are indexed in **order of importance**: ``rank`` ascending, then their order in the
file; the traffic of resources in no pool is one more pool, last, with minimum 0 and maximum
the whole budget.  ``budget`` is the connection's ``minute`` ``tokens`` limit; a pool's
``minimum`` and ``maximum`` are its percentages of it, in tokens (rounded down).

What the store reads, atomically with the decision and the charge:

- ``spent``: the connection's budget counter (every token admitted on the connection in the
  sliding minute, reconciled to the real usage like every counter);
- ``used[q]``: the tokens admitted for pool ``q`` in the sliding minute, reconciled likewise;
- ``unmet[q]``: the tokens of pool ``q``'s requests the pool gate refused in the last 10 s.

**Demand**: ``want[q] = used[q] + unmet[q]``, plus the cost for the pool asking now.
**Guarantee**: ``g[q] = min(minimum[q], want[q])``: a pool is owed its minimum only as far as
it wants it; the rest of its minimum is idle, and lent.

**Allocation** (:func:`allocate`): every pool gets its guarantee; the rest of the budget goes
to the pools in order of importance, each up to ``min(maximum, want)``.

**Admission** of ``cost`` tokens for pool ``p`` needs, besides the limits:

- *share*: ``used[p] + cost <= alloc[p]``;
- *room*: ``spent + cost + held <= budget``, where ``held`` sums, over the other pools, what
  they are owed and have not been given: for a more important pool its allocation, for a less
  important one its guarantee (``max(0, alloc - used)``, ``max(0, g - used)``).  When ``p``
  asks within its own minimum (``used[p] + cost <= minimum[p]``), only the more important
  pools' guarantees are held: a guarantee outranks any lending.

Held amounts are made of unmet demand (``g - used <= unmet``, ``alloc - used <= unmet``), so
capacity nobody is waiting for is always lent.  What this guarantees, and the tests check
(tests/capacity/test_pool_properties.py):

1. *Budget*: no admission takes ``spent`` past the budget.
2. *Minimum*: once a pool has been refused within its minimum, no other pool is admitted beyond
   its own guarantee, and no less important pool at all, out of the room that demand needs:
   the pool is served from the first tokens that leave the window (at most 61 s later, when
   everything it lent was admitted at once; in steady traffic, at the next bucket).
3. *Rank order*: once a pool has been refused a request that fits its maximum, no less
   important pool is admitted beyond its guarantee.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from attrs import field, frozen

from vmx_core.capacity.window import Window

#: How long a refused request keeps claiming lent capacity for its pool: long enough to span
#: a client's retry after ``Retry-After``, short enough that a pool that stopped asking soon
#: stops holding back the less important ones.
UNMET = Window("unmet", 10.0, 1.0, 10)


@frozen
class PoolCheck:
    """The pool step of one admission, for the store: which counters to read, the shares, who asks.

    ``budget`` is the index, among the admission's checks, of the connection's budget check: its
    ``max_tokens`` is the budget, its ``tokens`` the cost, its count ``spent``."""

    budget: int
    asker: int
    minimums: tuple[int, ...]
    maximums: tuple[int, ...]
    used_keys: tuple[str, ...]
    unmet_keys: tuple[str, ...]
    used_window: Window
    #: Whether a refusal adds its cost to the asker's unmet demand (a waiting request does not
    #: re-add it on every retry).
    record_unmet: bool = True


@frozen
class PoolReading:
    """What the store read in the pool step (before any charge)."""

    spent: int
    used: tuple[int, ...]
    unmet: tuple[int, ...]
    #: bucket -> (requests, tokens) of the asker's used counter; filled only on a refusal.
    asker_buckets: Mapping[int, tuple[int, int]] = field(factory=dict)


@frozen
class Decision:
    admitted: bool
    allocation: tuple[int, ...]
    guarantees: tuple[int, ...]
    share_ok: bool
    room_ok: bool
    #: What the room check held for the other pools.
    held: int
    #: Whether the asker stayed within its minimum.
    within_minimum: bool

    def demanding(self, q: int) -> bool:
        return self.allocation[q] > 0 or self.guarantees[q] > 0


def allocate(
    budget: int, minimums: Sequence[int], maximums: Sequence[int], wants: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(guarantees, allocation): every pool its ``min(minimum, want)``, then the rest of the
    budget in order of importance, each pool up to ``min(maximum, want)``."""
    guarantees = tuple(min(lo, w) for lo, w in zip(minimums, wants, strict=True))
    alloc = list(guarantees)
    rest = max(0, budget - sum(guarantees))
    for q, w in enumerate(wants):
        if rest <= 0:
            break
        extra = min(rest, min(maximums[q], w) - alloc[q])
        if extra > 0:
            alloc[q] += extra
            rest -= extra
    return guarantees, tuple(alloc)


def decide(
    budget: int,
    spent: int,
    minimums: Sequence[int],
    maximums: Sequence[int],
    used: Sequence[int],
    unmet: Sequence[int],
    asker: int,
    cost: int,
) -> Decision:
    """Whether ``cost`` tokens for pool ``asker`` pass the pool gate (module docstring)."""
    n = len(minimums)
    wants = [used[q] + unmet[q] + (cost if q == asker else 0) for q in range(n)]
    guarantees, alloc = allocate(budget, minimums, maximums, wants)
    within = used[asker] + cost <= minimums[asker]
    held = 0
    for q in range(n):
        if q < asker:
            held += max(0, (guarantees[q] if within else alloc[q]) - used[q])
        elif q > asker and not within:
            held += max(0, guarantees[q] - used[q])
    share_ok = used[asker] + cost <= alloc[asker]
    room_ok = spent + cost + held <= budget
    return Decision(share_ok and room_ok, alloc, guarantees, share_ok, room_ok, held, within)
