"""Circuit breakers and error_rate() shared through the capacity store: gateway processes on one
Redis (or Redis Cluster) see one error rate and one circuit state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.capacity.conftest import Clock
from tests.capacity.test_gateway_capacity import BrokenStore
from vmx_core import Gateway
from vmx_core.audit.record import Attempt
from vmx_core.capacity.redis import RedisStore
from vmx_core.config import config_from_dict
from vmx_core.config.models import CircuitBreakerConfig
from vmx_core.errors import UpstreamHTTPError
from vmx_core.routing.breaker import CircuitBreaker
from vmx_core.routing.health import ConnectionHealth
from vmx_core.routing.shared import STALE_S, SharedOutcomes
from vmx_core.security.apikeys import hash_key
from vmx_core.testing import TEST_KEY, FakeProvider

CFG = CircuitBreakerConfig(threshold=50, window_s=10, min_requests=4, cooldown_s=5)


@pytest.fixture(params=["redis", "redis-cluster"])
def shared_uri(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url"))


class Process:
    """What one gateway process holds: its own store client, breaker and health counters."""

    def __init__(self, uri: str, clock: Clock) -> None:
        self.shared = SharedOutcomes(RedisStore.from_uri(uri), clock)
        self.breaker = CircuitBreaker(shared=self.shared)
        self.health = ConnectionHealth(shared=self.shared)


@pytest.fixture
async def two(shared_uri: str, clock: Clock) -> AsyncIterator[tuple[Process, Process]]:
    a, b = Process(shared_uri, clock), Process(shared_uri, clock)
    yield a, b
    for p in (a, b):
        await p.shared.aclose()
        await p.shared.store.aclose()


async def test_a_circuit_opened_in_one_process_is_open_in_another(two: tuple[Process, Process], tenant: str) -> None:
    """Process A's failures open the circuit in process B, which sent nothing itself."""
    a, b = two
    key = (tenant, "prod", "up")
    assert b.breaker.allow(key, CFG, now=100.0)  # B watches the circuit from now on
    for failed in (False, True, True, True):
        assert a.breaker.allow(key, CFG, now=100.0)
        a.breaker.record(key, failed, now=100.0)
    assert not a.breaker.allow(key, CFG, now=100.1)
    await a.shared.sync()
    await b.shared.sync()
    assert not b.breaker.allow(key, CFG, now=100.2)
    assert b.breaker.state(key, now=100.2) == "open"


async def test_each_process_probes_and_then_forgets_the_failures_that_opened_it(two: tuple[Process, Process], tenant: str, clock: Clock) -> None:
    """After the cooldown a process sends its own probe; its success closes its circuit even
    though the shared window still holds the failures; the other stays open until it probes."""
    a, b = two
    key = (tenant, "prod", "up")
    b.shared.watch([key])
    for _ in range(4):
        a.breaker.record(key, True, now=100.0)
    await a.shared.sync()
    await b.shared.sync()
    assert not a.breaker.allow(key, CFG, now=100.0) and not b.breaker.allow(key, CFG, now=100.0)
    clock.advance(6)
    assert b.breaker.allow(key, CFG, now=106.0)  # B's half-open probe
    b.breaker.record(key, False, now=106.0)
    clock.advance(1)
    await b.shared.sync()
    assert b.breaker.allow(key, CFG, now=107.0) and b.breaker.state(key, now=107.0) == "closed"
    assert not a.breaker.allow(key, CFG, now=104.0)  # A: still cooling down, its probe is its own


async def test_error_rate_reads_every_process_outcomes(two: tuple[Process, Process], tenant: str) -> None:
    """Failures recorded by process A are in the error rate process B's rules read."""
    a, b = two
    for status in (500, 500, 500, None):
        a.health.record(tenant, "prod", Attempt("up", "openai", "m", status, "http_error" if status else None, 1.0))
    await a.shared.sync()
    key = (tenant, "prod", "up")
    assert await b.health.rate(key, 5) == 75.0
    assert b.health.error_rate(key, 5) == 0.0  # what B saw itself


async def test_an_unreachable_store_leaves_each_process_its_own_counts(clock: Clock) -> None:
    """With the store down, sync fails quietly (counted) and breakers and error_rate() use what
    the process saw; a snapshot older than STALE_S is not trusted either."""
    shared = SharedOutcomes(BrokenStore(), clock)
    breaker, health = CircuitBreaker(shared=shared), ConnectionHealth(shared=shared)
    key = ("w", "e", "up")
    for _ in range(4):
        breaker.record(key, True, now=100.0)
    await shared.sync()
    assert shared.errors == 1 and shared.counts(key, 10) is None
    assert not breaker.allow(key, CFG, now=100.0)  # its own four failures
    health.record("w", "e", Attempt("up", "openai", "m", 503, "http_error", 1.0))
    assert await health.rate(key, 5) == 100.0 and shared.errors == 2


async def test_a_stale_snapshot_is_not_used(two: tuple[Process, Process], tenant: str, clock: Clock) -> None:
    """A snapshot older than STALE_S (the store stopped answering) counts for nothing."""
    a, b = two
    key = (tenant, "prod", "up")
    b.shared.watch([key])
    for _ in range(4):
        a.breaker.record(key, True, now=100.0)
    await a.shared.sync()
    await b.shared.sync()
    assert b.shared.counts(key, 600) == (0, 4)
    clock.advance(STALE_S + 1)
    assert b.shared.counts(key, 600) is None


def config(tenant: str, uri: str) -> dict[str, Any]:
    return {
        "storage": {"capacity": uri},
        "workspaces": {tenant: {"environments": {"prod": {
            "connections": {"primary": {"provider": "fake"}, "secondary": {"provider": "fake"}},
            "resources": {"chat": {
                "model": {"connection": "primary", "model": "fake-1"},
                "fallback": [{"connection": "secondary", "model": "fake-2"}],
                "circuit_breaker": {"threshold": 50, "window_s": 30, "min_requests": 4, "cooldown_s": 30},
            }},
            "api_keys": {"app": {"key_sha256": hash_key(TEST_KEY), "resources": ["*"]}},
        }}}},
    }


async def test_two_gateways_on_one_redis_share_the_circuit(shared_uri: str, tenant: str) -> None:
    """Gateway 1's failing primary opens the circuit in gateway 2: its next request goes to the
    fallback without calling the primary."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    fake1, fake2 = FakeProvider(), FakeProvider()
    raw = config(tenant, shared_uri)
    async with Gateway.from_config(config_from_dict(raw, environ={}), plugins=[fake1], entry_points=False) as gw1, \
            Gateway.from_config(config_from_dict(raw, environ={}), plugins=[fake2], entry_points=False) as gw2:
        for _ in range(4):
            fake1.queue_error(UpstreamHTTPError(503, "down"))  # the primary fails, the fallback answers
            await gw1.chat_completions(tenant, "prod", body, api_key=TEST_KEY)
        assert gw1.shared is not None and gw2.shared is not None
        await gw1.shared.sync()
        await gw2.shared.sync()
        reply = await gw2.chat_completions(tenant, "prod", body, api_key=TEST_KEY)
    assert reply.headers["x-vmx-connection"] == "secondary" and reply.headers["x-vmx-attempts"] == "2"
    assert [c.model for c in fake2.calls] == ["fake-2"]


async def test_a_memory_store_shares_nothing(tenant: str) -> None:
    """With memory:// each process keeps its own counts: no shared outcomes are set up."""
    async with Gateway.from_config(config_from_dict(config(tenant, "memory://"), environ={}), plugins=[FakeProvider()], entry_points=False) as gw:
        assert gw.shared is None and gw.breaker.shared is None and gw.health.shared is None
