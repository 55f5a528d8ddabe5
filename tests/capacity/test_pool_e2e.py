"""Prioritization through a real ``vmx serve``: the low-rank pool is refused, the high-rank pool served."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import KEY
from tests.e2e.conftest import e2e_config
from tests.fakes.openai_upstream import FakeOpenAI
from vmx_core.tokens import estimate_request

MESSAGES = [{"role": "user", "content": "which pool am I in?"}]


async def test_vmx_serve_denies_the_low_rank_pool_and_serves_the_high_rank_one(upstream: FakeOpenAI, vmx_factory: Any) -> None:
    """Batch (rank 5, at most 30% of 10 reservations) gets 429 prioritization_gate_denied with
    Retry-After and the allocation after 3 requests; interactive (rank 1) is still served."""
    reserve = estimate_request({"model": "bulk", "messages": MESSAGES, "max_tokens": 40}) + 40
    # The upstream reports exactly the reservation: reconciling frees nothing mid-test.
    model = {"connection": "up", "model": f"usage-{reserve - 40}-40"}
    raw = e2e_config(upstream, chat={"model": model}, bulk={"model": model})
    env = raw["workspaces"]["acme"]["environments"]["prod"]
    env["connections"]["up"]["capacity"] = [{"period": "minute", "tokens": 10 * reserve}]
    env["pools"] = [
        {"name": "interactive", "rank": 1, "min_reservation": 60, "max_reservation": 100, "resources": ["chat"]},
        {"name": "batch", "rank": 5, "min_reservation": 0, "max_reservation": 30, "resources": ["bulk"]},
    ]
    vmx = await vmx_factory(raw)
    url = f"{vmx.base_url()}/chat/completions"
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {KEY}"}) as http:

        async def ask(resource: str) -> tuple[int, dict[str, Any], Any]:
            async with http.post(url, json={"model": resource, "messages": MESSAGES, "max_tokens": 40}) as resp:
                return resp.status, dict(resp.headers), await resp.json()

        interactive = [await ask("chat")]
        batch = [await ask("bulk") for _ in range(4)]
        interactive += [await ask("chat") for _ in range(4)]
    assert [s for s, _, _ in batch] == [200, 200, 200, 429]
    _, headers, body = batch[-1]
    assert body["error"]["code"] == "prioritization_gate_denied" and body["error"]["type"] == "rate_limit_error"
    # The message lists the allocation: this environment's pools, with what each has used.
    assert "pool 'batch'" in body["error"]["message"] and f"interactive {reserve} (used {reserve})" in body["error"]["message"]
    assert "acme" not in body["error"]["message"] and "'up'" not in body["error"]["message"]
    assert int(headers["Retry-After"]) >= 1
    assert headers["x-ratelimit-limit-tokens"] == str(3 * reserve) and headers["x-ratelimit-remaining-tokens"] == "0"
    assert [s for s, _, _ in interactive] == [200] * 5
    assert len(upstream.requests) == 3 + 5
