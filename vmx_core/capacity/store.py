"""What a capacity store is: the one atomic primitive every backend implements.

A store knows nothing about periods, levels or pools: it sums buckets, compares, and adds,
for all the checks of one admission at once (:mod:`vmx_core.capacity.window` plans them), and
runs the pool gate's decision (:func:`vmx_core.capacity.allocation.decide`) inside the same
atomic step when the admission carries a :class:`~vmx_core.capacity.allocation.PoolCheck`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from attrs import define

from vmx_core.capacity.allocation import PoolCheck, PoolReading
from vmx_core.capacity.window import Check, Counts
from vmx_core.errors import VmxError


class CapacityStoreError(VmxError):
    """The store could not be reached or failed; the driver's own exception is the cause."""


# ``@define`` rather than ``@frozen`` (``Admission`` and ``Adjustment``): one is made per admission
# and per reconciled counter, and a frozen class's ``__init__`` sets each field through
# ``object.__setattr__``, several times the cost of a plain slot store (issue 9).  Never mutated.
@define
class Admission:
    """A store's answer: whether every check fitted (and so was charged), and what it read."""

    admitted: bool
    counts: tuple[Counts, ...]
    #: What the pool step read, when the admission had one.
    pool: PoolReading | None = None


@define
class Adjustment:
    """Add (or, when negative, take back) requests and tokens in one bucket of one counter.

    A bucket that already left its window is not touched: what it held is forgotten anyway.
    Counts never go below zero."""

    key: str
    bucket: int
    oldest: int
    requests: int
    tokens: int
    ttl_ms: int


@runtime_checkable
class CapacityStore(Protocol):
    """A backend for ``storage.capacity``, returned by the ``vmx_capacity_store`` hook."""

    async def admit(self, checks: Sequence[Check], now: float, pool: PoolCheck | None = None) -> Admission:
        """Atomically: read every check's counted buckets; if *all* fit, add every charge to
        the current bucket; else change nothing and return the buckets of each check.

        With ``pool``: the budget check's tokens are left to the pool gate, which reads every
        pool's counters and decides in the same step; on admission the asker's used counter is
        charged too; when only the pool gate refused, the cost is added to the asker's unmet
        counter (if ``pool.record_unmet``) and nothing else changes."""
        ...

    async def adjust(self, adjustments: Sequence[Adjustment]) -> None:
        """Apply reconciliations and refunds (never refused)."""
        ...

    async def usage(self, checks: Sequence[Check], now: float) -> tuple[Counts, ...]:
        """Read the counted sums without charging (for ``capacity_usage()`` and pools)."""
        ...

    async def aclose(self) -> None: ...
