"""Capacity through the in-process gateway: levels, fail-over, reservation, answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.capacity.conftest import Clock
from vmx_core import Gateway
from vmx_core.audit.record import AuditRecord
from vmx_core.capacity.gate import Subject
from vmx_core.capacity.store import CapacityStoreError
from vmx_core.config import config_from_dict
from vmx_core.errors import CapacityExhausted, UpstreamHTTPError
from vmx_core.plugins import hookimpl
from vmx_core.security.apikeys import hash_key
from vmx_core.testing import TEST_KEY, FakeProvider

OTHER_KEY = "vmx_test_1111111111111111111111111111111111111111"
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}


def config(
    tenant: str,
    store_uri: str,
    conn: list[dict[str, Any]] | None = None,
    resource: list[dict[str, Any]] | None = None,
    key: list[dict[str, Any]] | None = None,
    fallback: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    chat: dict[str, Any] = {"model": {"connection": "primary", "model": "fake-1"}, "capacity": resource or []}
    if fallback:
        chat["fallback"] = [{"connection": "secondary", "model": "fake-2"}]
    return {
        "storage": {"capacity": store_uri},
        "capacity": settings,
        "workspaces": {tenant: {"environments": {"prod": {
            "connections": {
                "primary": {"provider": "fake", "capacity": conn or []},
                "secondary": {"provider": "fake"},
            },
            "resources": {"chat": chat, "chat2": {"model": {"connection": "primary", "model": "fake-1"}}},
            "api_keys": {
                "app": {"key_sha256": hash_key(TEST_KEY), "resources": ["*"], "capacity": key or []},
                "other": {"key_sha256": hash_key(OTHER_KEY), "resources": ["*"]},
            },
        }}}},
    }


class Records:
    name = "records"

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def enqueue(self, record: AuditRecord) -> None:
        self.records.append(record)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    @hookimpl
    def vmx_register_audit_sinks(self) -> list[Records]:
        return [self]


@asynccontextmanager
async def gateway(raw: dict[str, Any], *plugins: object, clock: Clock | None = None) -> AsyncIterator[Gateway]:
    gw = Gateway.from_config(config_from_dict(raw, environ={}), plugins=plugins, entry_points=False)
    async with gw:
        if clock is not None:
            assert gw.runtime is not None
            gw.runtime.gate.clock = clock
        yield gw


def call(gw: Gateway, tenant: str, key: str = TEST_KEY, **extra: Any) -> Any:
    return gw.chat_completions(tenant, "prod", {**BODY, **extra}, api_key=key)


async def refused(fn: Callable[[], Any]) -> CapacityExhausted:
    with pytest.raises(CapacityExhausted) as info:
        await fn()
    return info.value


async def test_connection_limit_answers_429_with_retry_after_and_headers(store_uri: str, tenant: str, clock: Clock) -> None:
    """The request past a connection's RPM gets 429 resource_exhausted, Retry-After and x-ratelimit-*."""
    raw = config(tenant, store_uri, conn=[{"period": "minute", "requests": 2}])
    async with gateway(raw, FakeProvider(), clock=clock) as gw:
        first = await call(gw, tenant)
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        await call(gw, tenant)
        clock.advance(30)
        err = await refused(lambda: call(gw, tenant))
    assert err.status == 429 and err.openai_code == "resource_exhausted"
    assert err.headers["retry-after"] == "31"  # the first admissions' bucket leaves at +61 s
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert "connection's minute limit" in err.message
    assert "primary" not in err.message and tenant not in err.message


async def test_connection_cap_is_shared_by_every_resource_and_key(store_uri: str, tenant: str) -> None:
    """Two resources and two keys on one connection draw on one connection counter."""
    raw = config(tenant, store_uri, conn=[{"period": "minute", "requests": 2}])
    async with gateway(raw, FakeProvider()) as gw:
        await call(gw, tenant)
        await gw.chat_completions(tenant, "prod", {**BODY, "model": "chat2"}, api_key=OTHER_KEY)
        err = await refused(lambda: gw.chat_completions(tenant, "prod", {**BODY, "model": "chat2"}, api_key=OTHER_KEY))
    assert "connection" in err.message


async def test_resource_and_key_limits_are_counted_on_their_own(store_uri: str, tenant: str) -> None:
    """A resource's limit binds only that resource; a key's limit only that key."""
    raw = config(tenant, store_uri, resource=[{"period": "hour", "requests": 1}], key=[{"period": "day", "requests": 2}])
    async with gateway(raw, FakeProvider()) as gw:
        await call(gw, tenant)
        err = await refused(lambda: call(gw, tenant))
        assert "resource's hour limit" in err.message
        await call(gw, tenant, model="chat2")  # another resource, same key: 2nd of the key's 2
        err = await refused(lambda: call(gw, tenant, model="chat2"))
        assert "API key's day limit" in err.message
        await gw.chat_completions(tenant, "prod", {**BODY, "model": "chat2"}, api_key=OTHER_KEY)


async def test_connection_refusal_fails_over_to_the_next_leg(store_uri: str, tenant: str) -> None:
    """A full connection is skipped like an upstream 429: the fallback connection answers."""
    raw = config(tenant, store_uri, conn=[{"period": "minute", "requests": 1}], fallback=True)
    fake = FakeProvider()
    async with gateway(raw, fake) as gw:
        assert (await call(gw, tenant)).headers["x-vmx-connection"] == "primary"
        second = await call(gw, tenant)
    assert second.headers["x-vmx-connection"] == "secondary"
    assert second.headers["x-vmx-attempts"] == "2"
    assert [c.model for c in fake.calls] == ["fake-1", "fake-2"]


async def test_resource_refusal_does_not_fail_over(store_uri: str, tenant: str) -> None:
    """A resource limit applies to every leg: the client gets 429 without any upstream call."""
    raw = config(tenant, store_uri, resource=[{"period": "minute", "requests": 1}], fallback=True)
    fake = FakeProvider()
    async with gateway(raw, fake) as gw:
        await call(gw, tenant)
        err = await refused(lambda: call(gw, tenant))
    assert err.headers["x-vmx-attempts"] == "1"
    assert len(fake.calls) == 1


async def test_reservation_is_reconciled_to_real_usage(store_uri: str, tenant: str) -> None:
    """Input estimate + max_tokens is reserved, then replaced by the upstream's usage (1 + 2)."""
    raw = config(tenant, store_uri, conn=[{"period": "minute", "tokens": 10_000}])
    async with gateway(raw, FakeProvider()) as gw:
        first = await call(gw, tenant, max_tokens=500)
        assert gw.runtime is not None
        subject = Subject(tenant, "prod", "primary", "chat", "app", None, {})
        _, counts = await gw.runtime.gate.usage(subject, "minute")
    reserved = 10_000 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert reserved > 500  # the input estimate plus the output cap
    assert counts[0].tokens == 3


async def test_failed_leg_refunds_its_tokens(store_uri: str, tenant: str) -> None:
    """A leg that fails gives its reserved tokens back; its connection keeps the request."""
    raw = config(tenant, store_uri, conn=[{"period": "minute", "requests": 10, "tokens": 10_000}], fallback=True)
    fake = FakeProvider()
    fake.queue_error(UpstreamHTTPError(503, "down"))
    async with gateway(raw, fake) as gw:
        reply = await call(gw, tenant, max_tokens=500)
        assert gw.runtime is not None
        _, counts = await gw.runtime.gate.usage(Subject(tenant, "prod", "primary", "chat", "app", None, {}), "minute")
    assert reply.headers["x-vmx-connection"] == "secondary"
    assert (counts[0].requests, counts[0].tokens) == (1, 0)


async def test_metadata_dimension_counts_each_value_apart(store_uri: str, tenant: str) -> None:
    """A limit split by a metadata field gives every value its own counter."""
    raw = config(tenant, store_uri, key=[{"period": "minute", "requests": 1, "dimension": "metadata", "dimension_field": "team"}])
    async with gateway(raw, FakeProvider()) as gw:
        await call(gw, tenant, vmx={"metadata": {"team": "a"}})
        await call(gw, tenant, vmx={"metadata": {"team": "b"}})
        await refused(lambda: call(gw, tenant, vmx={"metadata": {"team": "a"}}))


async def test_gate_stage_is_timed_in_the_audit_record(tenant: str) -> None:
    """The admission's time is recorded as the `gate` stage (audit gate_ms)."""
    sink = Records()
    raw = config(tenant, "memory://", conn=[{"period": "minute", "requests": 5}])
    async with gateway(raw, FakeProvider(), sink) as gw:
        await call(gw, tenant)
    record = sink.records[-1]
    assert record.stages["gate"] > 0 and record.gate_ms == record.stages["gate"]


class BrokenStore:
    """A store whose backend is down: what a Redis outage looks like to the gate."""

    async def admit(self, checks: Any, now: float) -> Any:
        raise CapacityStoreError("down")

    async def adjust(self, adjustments: Any) -> None:
        raise CapacityStoreError("down")

    async def usage(self, checks: Any, now: float) -> Any:
        raise CapacityStoreError("down")

    async def aclose(self) -> None:
        return None


class BrokenStorePlugin:
    name = "broken-store"

    @hookimpl
    def vmx_capacity_store(self, uri: str) -> Any:
        return BrokenStore() if uri.startswith("broken://") else None


@pytest.mark.parametrize("policy", ["allow", "deny"])
async def test_store_errors_follow_on_store_error(tenant: str, policy: str) -> None:
    """An unreachable store admits (allow) or refuses (deny), and every failure is counted."""
    raw = config(tenant, "broken://", conn=[{"period": "minute", "requests": 5}], on_store_error=policy)
    async with gateway(raw, FakeProvider(), BrokenStorePlugin()) as gw:
        if policy == "allow":
            assert (await call(gw, tenant)).status == 200
        else:
            err = await refused(lambda: call(gw, tenant))
            assert err.headers["retry-after"] == "1"
        assert gw.runtime is not None and gw.runtime.gate.store_errors == 1


async def test_a_plugin_store_replaces_the_builtin_one(tenant: str) -> None:
    """vmx_capacity_store from a plugin wins over the trylast built-ins for its scheme."""
    raw = config(tenant, "memory://", conn=[{"period": "minute", "requests": 5}])

    class Replacement:
        name = "replacement"

        @hookimpl
        def vmx_capacity_store(self, uri: str) -> Any:
            return BrokenStore()

    async with gateway(raw, FakeProvider(), Replacement()) as gw:
        assert isinstance(gw.capacity_store, BrokenStore)


async def test_capacity_usage_steers_routing_away_from_a_busy_connection(store_uri: str, tenant: str) -> None:
    """A rule reading capacity_usage('minute') moves traffic once the primary is half used."""
    raw = config(tenant, store_uri, conn=[{"period": "minute", "requests": 4}])
    raw["workspaces"][tenant]["environments"]["prod"]["resources"]["chat"]["routing"] = [
        {"name": "spill", "when": 'capacity_usage("minute").requests_percent >= 50.0',
         "then": {"connection": "secondary", "model": "fake-2"}}
    ]
    async with gateway(raw, FakeProvider()) as gw:
        used = [(await call(gw, tenant)).headers["x-vmx-connection"] for _ in range(4)]
    assert used == ["primary", "primary", "secondary", "secondary"]
