"""Capacity limits (DESIGN §10): sliding windows, one atomic admission per leg, stores by URI.

- :mod:`~vmx_core.capacity.window`: the sliding-window strategy (buckets, Retry-After, headers)
- :mod:`~vmx_core.capacity.limits`: which limits apply, and their counter keys
- :mod:`~vmx_core.capacity.store`: the store protocol; :mod:`~vmx_core.capacity.memory`,
  :mod:`~vmx_core.capacity.redis` (Lua in ``lua/``) implement it
- :mod:`~vmx_core.capacity.allocation`: the prioritization pools' strategy;
  :mod:`~vmx_core.capacity.pools`: an environment's pools ready for admission
- :mod:`~vmx_core.capacity.gate`: admission (pools included), reconciliation and refunds
"""

from vmx_core.capacity.gate import CapacityRefused, Gate, PoolRefused, Subject, Ticket
from vmx_core.capacity.store import Adjustment, Admission, CapacityStore, CapacityStoreError
from vmx_core.capacity.window import Check, Counts, Window

__all__ = [
    "Adjustment",
    "Admission",
    "CapacityRefused",
    "CapacityStore",
    "CapacityStoreError",
    "Check",
    "Counts",
    "Gate",
    "PoolRefused",
    "Subject",
    "Ticket",
    "Window",
]
