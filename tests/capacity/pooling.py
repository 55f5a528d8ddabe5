"""Builders for the pool tests: a tenant with one budgeted connection, one resource per pool."""

from __future__ import annotations

from typing import Any

from tests.capacity.conftest import Clock
from vmx_core.capacity.gate import Gate, Subject
from vmx_core.capacity.store import CapacityStore
from vmx_core.config import config_from_dict
from vmx_core.config.models import VmxConfig

#: The resource of traffic outside every pool.
OUTSIDE = "unpooled"


def resource_of(pool: str) -> str:
    return f"r-{pool}"


def pool(name: str, rank: int, lo: float, hi: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "rank": rank, "min_reservation": lo, "max_reservation": hi, "resources": [resource_of(name)], **extra}


def pooled_raw(tenant: str, budget: int, pools: list[dict[str, Any]], store_uri: str = "memory://",
               limits: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Connection ``c`` with a minute budget of ``budget`` tokens (and ``limits``), connection
    ``spare`` without limits, a resource per pool plus ``unpooled``, and the pools."""
    names = [p["name"] for p in pools] + [None]
    resources = {
        (resource_of(n) if n is not None else OUTSIDE): {"model": {"connection": "c", "model": "m"}} for n in names
    }
    capacity = [{"period": "minute", "tokens": budget}, *(limits or [])]
    return {
        "storage": {"capacity": store_uri},
        "workspaces": {tenant: {"environments": {"prod": {
            "connections": {"c": {"provider": "fake", "capacity": capacity}, "spare": {"provider": "fake"}},
            "resources": resources,
            "pools": pools,
        }}}},
    }


def pooled_config(tenant: str, budget: int, pools: list[dict[str, Any]], **kw: Any) -> VmxConfig:
    return config_from_dict(pooled_raw(tenant, budget, pools, **kw), environ={})


class FakeSleep:
    """``Gate.sleep`` that moves the test's clock instead of waiting: waits become exact."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


def pooled_gate(store: CapacityStore, config: VmxConfig, clock: Clock) -> Gate:
    gate = Gate.build(config, store, clock=clock)
    gate.sleep = FakeSleep(clock)
    return gate


def subject(tenant: str, pool_name: str | None) -> Subject:
    resource = resource_of(pool_name) if pool_name is not None else OUTSIDE
    return Subject(tenant, "prod", "c", resource, None, None, {})
