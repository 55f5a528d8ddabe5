"""Capacity fixtures: every store on a real server, a controllable clock, unique key spaces."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.e2e.conftest import upstream, vmx_factory  # noqa: F401  (end-to-end fixtures)
from tests.services.redis import redis_cluster_url, redis_url  # noqa: F401  (session servers)
from vmx_core.capacity.memory import MemoryStore
from vmx_core.capacity.redis import RedisStore
from vmx_core.capacity.store import CapacityStore

STORES = ["memory", "redis", "redis-cluster"]


class Clock:
    """A clock the test moves: windows, buckets and Retry-After become exact."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tenant() -> str:
    """A workspace name no other test uses, so tests share servers without sharing counters."""
    return f"ws-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store_uri(request: pytest.FixtureRequest) -> str:
    kind = getattr(request, "param", "memory")
    if kind == "memory":
        return "memory://"
    if kind == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("redis_cluster_url"))


@pytest.fixture
async def store(store_uri: str) -> AsyncIterator[CapacityStore]:
    s: CapacityStore = MemoryStore() if store_uri == "memory://" else RedisStore.from_uri(store_uri)
    yield s
    await s.aclose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses ``store`` (or ``store_uri``) runs against all three stores."""
    if "store_uri" in metafunc.fixturenames:
        metafunc.parametrize("store_uri", STORES, indirect=True)
