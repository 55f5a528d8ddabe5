"""An API key of workspace alpha on beta's completion endpoints: refused with nothing of beta in
the answer; beta's audit keeps its rows and gains only the refusal record any caller without a
valid key would leave (no key name, no resource, no tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.server import VmxProcess
from tests.isolation.routes import COMPLETION_ROUTES
from tests.isolation.world import ADMIN, KEYS, MARK, A, B, seed
from tests.services.postgres import PostgresServer
from vmx_core.audit.query import AuditQuery
from vmx_core.audit.rows import Row
from vmx_core.audit.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="package")

_MESSAGES = [{"role": "user", "content": "hi"}]
#: (path after the base, method) -> body, for every completion endpoint.
COMPLETIONS: dict[tuple[str, str], Any] = {
    ("/chat/completions", "POST"): {"model": "chat", "messages": _MESSAGES},
    ("/responses", "POST"): {"model": "chat", "input": "hi"},
    ("/anthropic/messages", "POST"): {"model": "chat", "max_tokens": 16, "messages": _MESSAGES},
    ("/anthropic/v1/messages", "POST"): {"model": "chat", "max_tokens": 16, "messages": _MESSAGES},
    ("/anthropic/messages/count_tokens", "POST"): {"model": "chat", "messages": _MESSAGES},
    ("/anthropic/v1/messages/count_tokens", "POST"): {"model": "chat", "messages": _MESSAGES},
    ("/models", "GET"): None,
}


async def beta_rows(uri: str) -> list[Row]:
    store = open_store(uri)
    await store.connect()
    try:
        return await store.fetch(AuditQuery(B, "prod", limit=1000))
    finally:
        await store.aclose()


async def test_every_completion_route_has_a_case() -> None:
    """The key test below covers every completion endpoint the app mounts, and only those."""
    assert sorted(COMPLETIONS) == COMPLETION_ROUTES


async def test_a_key_of_alpha_gets_nothing_of_beta(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """Alpha's key works in alpha, gets a bare 403 in beta, and beta's audit gains only keyless refusals."""
    config = await seed(postgres_server, "http://127.0.0.1:9/realms/unused", "vmx")
    uri = config["storage"]["audit"]
    seeded = await beta_rows(uri)
    proc = VmxProcess(config, tmp_path, {"VMX_ADMIN_TOKEN": ADMIN})
    await proc.start()
    refused = 0
    try:
        async with aiohttp.ClientSession() as http:
            for (path, method), body in sorted(COMPLETIONS.items()):
                answers = []
                for ws in (A, B):
                    async with http.request(method, proc.base_url(ws) + path, json=body,
                                            headers={"Authorization": f"Bearer {KEYS[A]}"}) as resp:
                        answers.append((resp.status, await resp.text()))
                assert [status for status, _ in answers] == [200, 403], (path, answers)
                assert not any(MARK in text for _, text in answers)
                refused += method == "POST"  # /models answers without an audit row
    finally:
        assert await proc.stop() == 0  # flushes the audit queue
    after = await beta_rows(uri)
    added = [r for r in after if r not in seeded]
    assert len(after) == len(seeded) + refused and all(r in after for r in seeded)
    assert {(r["status_code"], r["api_key_id"], r["resource"], r["model"], r["total_tokens"]) for r in added} == {
        (403, None, None, None, None)}
