"""Pools through the in-process gateway: the 429 a client gets, fail-over, the audit record."""

from __future__ import annotations

from typing import Any

import pytest

from tests.capacity.test_gateway_capacity import BODY, Records, gateway
from vmx_core.errors import PrioritizationDenied
from vmx_core.security.apikeys import hash_key
from vmx_core.testing import TEST_KEY, FakeProvider
from vmx_core.tokens import estimate_request

MAX_TOKENS = 100
RESERVED = estimate_request({**BODY, "max_tokens": MAX_TOKENS}) + MAX_TOKENS


def config(tenant: str, fallback: bool = False) -> dict[str, Any]:
    """Connection ``primary`` with a budget of 10 reservations; ``interactive`` (resource chat)
    and ``batch`` (resource bulk, at most 20%: two reservations) share it."""
    bulk: dict[str, Any] = {"model": {"connection": "primary", "model": "fake-1"}}
    if fallback:
        bulk["fallback"] = [{"connection": "secondary", "model": "fake-2"}]
    return {
        "workspaces": {tenant: {"environments": {"prod": {
            "connections": {
                "primary": {
                    "provider": "fake",
                    "capacity": [{"period": "minute", "tokens": 10 * RESERVED}],
                    # The fake reports 1 prompt token and a token per word: exactly the
                    # reservation, so reconciling frees nothing mid-test.
                    "options": {"reply": " ".join(["w"] * (RESERVED - 1))},
                },
                "secondary": {"provider": "fake"},
            },
            "resources": {"chat": {"model": {"connection": "primary", "model": "fake-1"}}, "bulk": bulk},
            "api_keys": {"app": {"key_sha256": hash_key(TEST_KEY), "resources": ["*"]}},
            "pools": [
                {"name": "interactive", "rank": 1, "min_reservation": 50, "max_reservation": 100, "resources": ["chat"]},
                {"name": "batch", "rank": 2, "min_reservation": 0, "max_reservation": 20, "resources": ["bulk"]},
            ],
        }}}},
    }


def call(gw: Any, tenant: str, resource: str) -> Any:
    return gw.chat_completions(tenant, "prod", {**BODY, "model": resource, "max_tokens": MAX_TOKENS}, api_key=TEST_KEY)


async def test_the_low_rank_pool_gets_429_while_the_high_rank_pool_is_served(tenant: str) -> None:
    """Past its share the batch pool gets 429 prioritization_gate_denied (recorded as such,
    no upstream call); the interactive pool is still served on the same connection."""
    sink, fake = Records(), FakeProvider()
    async with gateway(config(tenant), fake, sink) as gw:
        served = 0
        with pytest.raises(PrioritizationDenied) as info:
            for _ in range(10):
                await call(gw, tenant, "bulk")
                served += 1
        for _ in range(3):
            assert (await call(gw, tenant, "chat")).status == 200
    err = info.value
    assert served == 2 and err.status == 429 and err.openai_code == "prioritization_gate_denied"
    assert int(err.headers["retry-after"]) >= 1 and "batch" in err.message and "primary" not in err.message
    assert len(fake.calls) == served + 3
    refused = [r for r in sink.records if r.status_code == 429]
    assert [a.reason for a in refused[0].attempts] == ["prioritization_denied"]
    assert refused[0].error_code == "prioritization_gate_denied"


async def test_a_pool_refusal_fails_over_to_the_next_connection(tenant: str) -> None:
    """The pool gate is the connection's: a refused leg fails over like a full connection."""
    fake = FakeProvider()
    async with gateway(config(tenant, fallback=True), fake) as gw:
        answers = [await call(gw, tenant, "bulk") for _ in range(6)]
    used = [a.headers["x-vmx-connection"] for a in answers]
    assert used[:2] == ["primary", "primary"] and set(used[2:]) == {"secondary"}
    assert answers[-1].headers["x-vmx-attempts"] == "2"
