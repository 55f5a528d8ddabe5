"""Properties of the sliding-window strategy, independent of any store."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.capacity.gate import Gate
from vmx_core.capacity.memory import MemoryStore
from vmx_core.capacity.window import Check, Counts, Window, retry_after, retry_after_header
from vmx_core.config.models import CapacitySettings
from vmx_core.wire.usage import Usage

MINUTE = Window.of("minute")


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.floats(0, 20, allow_nan=False), min_size=1, max_size=120),
    limit=st.integers(1, 12),
    costs=st.lists(st.integers(0, 50), min_size=1, max_size=120),
    token_limit=st.integers(50, 300),
)
def test_no_sliding_interval_ever_exceeds_the_limit(gaps: list[float], limit: int, costs: list[int], token_limit: int) -> None:
    """Whatever the arrival times, no 60 s interval holds more than the limit (requests or tokens)."""
    store = MemoryStore()
    admitted: list[tuple[float, int]] = []
    t = 1_800_000_000.0
    for i, gap in enumerate(gaps):
        t += gap
        cost = costs[i % len(costs)]
        check = Check("k", MINUTE, limit, token_limit, 1, cost)
        if asyncio.run(store.admit([check], t)).admitted:
            admitted.append((t, cost))
    for start, _ in admitted:
        inside = [c for x, c in admitted if start <= x < start + 60]
        assert len(inside) <= limit
        assert sum(inside) <= token_limit


@given(counts=st.lists(st.tuples(st.integers(0, 59), st.integers(1, 3)), min_size=1, max_size=20), offset=st.floats(0, 0.99))
def test_retry_after_is_exactly_when_the_check_fits_again(counts: list[tuple[int, int]], offset: float) -> None:
    """After Retry-After the same request fits (if nobody else came), and not a bucket earlier."""
    base = 1_800_000_000
    buckets: dict[int, tuple[int, int]] = {}
    for b, n in counts:
        r, _ = buckets.get(base + b, (0, 0))
        buckets[base + b] = (r + n, 0)
    used = sum(r for r, _ in buckets.values())
    check = Check("k", MINUTE, used, None, 1, 0)  # full: the next request needs one freed
    now = base + 59 + offset
    wait = retry_after(check, Counts(used, 0, buckets), now)
    later = now + wait
    still = {b: v for b, v in buckets.items() if b >= MINUTE.oldest(later)}
    assert sum(r for r, _ in still.values()) + 1 <= used
    earlier = {b: v for b, v in buckets.items() if b >= MINUTE.oldest(later - 1.0)}
    assert sum(r for r, _ in earlier.values()) + 1 > used
    assert int(retry_after_header(wait)) >= 1


def test_cached_tokens_count_only_when_configured() -> None:
    """count_cached_tokens: false charges prompt tokens minus the cached ones."""
    usage = Usage(prompt_tokens=1000, completion_tokens=50, cached_tokens=800)
    assert Gate(MemoryStore()).charged_tokens(usage) == 1050
    assert Gate(MemoryStore(), CapacitySettings(count_cached_tokens=False)).charged_tokens(usage) == 250
