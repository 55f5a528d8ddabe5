"""Per-request stage timings: the data behind ``x-vmx-overhead-ms`` and the audit columns."""

from __future__ import annotations

import time

from attrs import define, field


@define
class Timings:
    start: float = field(factory=time.perf_counter)
    #: stage name -> milliseconds, in the order stages ran.
    stages: dict[str, float] = field(factory=dict)
    #: Time spent waiting on upstreams (all legs), excluded from the gateway's overhead.
    upstream_ms: float = 0.0
    #: Streams: time a committed stream waited for the server and the client to take each
    #: frame (a slow reader's backpressure), also excluded: it is not the gateway's work.
    downstream_ms: float = 0.0
    ttft_ms: float | None = None

    def mark(self, stage: str, since: float) -> float:
        """Record ``stage`` as lasting from ``since`` until now; returns now."""
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + (now - since) * 1000
        return now

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def overhead_ms(self) -> float:
        return max(0.0, self.elapsed_ms() - self.upstream_ms - self.downstream_ms)
