"""Audit counters (queued, written, spooled, replayed), readable as a dict and exported as
OpenTelemetry observable counters through ``opentelemetry-api`` (no-ops without an SDK)."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

from attrs import define
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

STATES = ("queued", "written", "spooled", "replayed")


@define(weakref_slot=True, eq=False)
class AuditCounters:
    queued: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0

    def __attrs_post_init__(self) -> None:
        _live.add(self)

    def as_dict(self) -> dict[str, int]:
        return {s: getattr(self, s) for s in STATES}


# Every sink's counters, summed at collection time; a closed sink's counters vanish with it.
_live: weakref.WeakSet[AuditCounters] = weakref.WeakSet()


def _observe(options: CallbackOptions) -> Iterable[Observation]:
    for state in STATES:
        yield Observation(sum(getattr(c, state) for c in list(_live)), {"vmx.audit.state": state})


metrics.get_meter("vmx").create_observable_counter(
    "vmx.audit.rows", callbacks=[_observe], description="audit rows by state: queued, written, spooled, replayed"
)
