"""The circuit breaker opens on a high error rate, skips the connection, and recovers
through a single half-open probe."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.config.models import CircuitBreakerConfig
from vmx_core.errors import UpstreamHTTPError
from vmx_core.routing.breaker import CircuitBreaker
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway

KEY = ("w", "e", "c")
CFG = CircuitBreakerConfig(threshold=50, window_s=10, min_requests=4, cooldown_s=5)


def test_opens_when_the_error_rate_passes_the_threshold() -> None:
    """Three failures in four calls (75% > 50%) open the circuit."""
    cb = CircuitBreaker()
    for failed in (False, True, True, True):
        assert cb.allow(KEY, CFG, now=100.0)
        cb.record(KEY, failed, now=100.0)
    assert not cb.allow(KEY, CFG, now=100.5)
    assert cb.state(KEY, now=100.5) == "open"


def test_needs_min_requests_before_opening() -> None:
    """Below min_requests even a 100% error rate keeps the circuit closed."""
    cb = CircuitBreaker()
    for _ in range(3):
        cb.record(KEY, True, now=100.0)
    assert cb.allow(KEY, CFG, now=100.0)


def test_half_open_lets_one_probe_through_and_success_closes() -> None:
    """After the cooldown exactly one probe goes; its success closes the circuit."""
    cb = CircuitBreaker()
    for _ in range(4):
        cb.record(KEY, True, now=100.0)
    assert not cb.allow(KEY, CFG, now=100.0)
    assert not cb.allow(KEY, CFG, now=104.9)
    assert cb.allow(KEY, CFG, now=105.1)  # the probe
    assert not cb.allow(KEY, CFG, now=105.2)  # no second probe while the first is out
    cb.record(KEY, False, now=105.3)
    assert cb.state(KEY, now=105.3) == "closed"
    assert cb.allow(KEY, CFG, now=105.4)


def test_a_failed_probe_reopens_for_another_cooldown() -> None:
    """A probe that fails re-opens the circuit from the time it failed."""
    cb = CircuitBreaker()
    for _ in range(4):
        cb.record(KEY, True, now=100.0)
    cb.allow(KEY, CFG, now=100.0)
    assert cb.allow(KEY, CFG, now=105.5)
    cb.record(KEY, True, now=105.6)
    assert not cb.allow(KEY, CFG, now=110.5)
    assert cb.allow(KEY, CFG, now=110.7)


def test_old_failures_slide_out_of_the_window() -> None:
    """Failures older than window_s no longer count."""
    cb = CircuitBreaker()
    for _ in range(4):
        cb.record(KEY, True, now=100.0)
    for _ in range(4):
        cb.record(KEY, False, now=120.0)
    assert cb.allow(KEY, CFG, now=120.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0, max_value=3)), max_size=60))
def test_never_allows_while_open(events: list[tuple[bool, float]]) -> None:
    """Whatever the outcomes, no call is allowed inside an open period before its cooldown."""
    cb = CircuitBreaker()
    now = 0.0
    for failed, gap in events:
        now += gap
        state_before = cb.state(KEY, now)
        allowed = cb.allow(KEY, CFG, now)
        if state_before == "open":
            assert not allowed
        if allowed:
            cb.record(KEY, failed, now)


async def test_gateway_skips_an_open_connection_and_uses_the_fallback() -> None:
    """Once open, the primary is skipped without a call (attempt `circuit_open`)."""
    fake = FakeProvider()
    resource = {
        "model": {"connection": "fake", "model": "primary"},
        "circuit_breaker": {"threshold": 50, "window_s": 60, "min_requests": 2, "cooldown_s": 60},
        "fallback": [{"connection": "other", "model": "backup"}],
    }
    gw = make_test_gateway(fake, resource=resource, connections=["fake", "other"])
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    async with gw:
        for _ in range(2):
            fake.queue_error(UpstreamHTTPError(500, "down"))  # the primary fails, the backup answers
            reply = await gw.chat_completions("test", "test", body, api_key=TEST_KEY)
            assert reply.headers["x-vmx-model"] == "backup"
        calls_before = len(fake.calls)
        reply = await gw.chat_completions("test", "test", body, api_key=TEST_KEY)
    assert reply.headers["x-vmx-model"] == "backup"
    assert [c.model for c in fake.calls[calls_before:]] == ["backup"]
