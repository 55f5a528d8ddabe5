"""End to end: a real ``vmx serve`` writes one audit row per request into its SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

import aiohttp
import openai
import orjson

from tests.conftest import KEY
from tests.e2e.conftest import UPSTREAM_SECRET, e2e_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess


async def test_every_request_shape_leaves_one_row_and_no_secret(upstream: FakeOpenAI, vmx_factory: object) -> None:
    """Chat and Responses, streamed and not, plus an error: one row each, flushed by SIGTERM."""
    config = e2e_config(upstream, broken="status-500")
    proc: VmxProcess = await vmx_factory(config)  # type: ignore[operator]
    client = openai.AsyncOpenAI(base_url=proc.base_url(), api_key=KEY, max_retries=0)
    msgs = [{"role": "user", "content": "ping"}]
    await client.chat.completions.create(model="chat", messages=msgs, extra_body={"vmx": {"correlationId": "c-1"}})
    stream = await client.chat.completions.create(model="chat", messages=msgs, stream=True)
    async for _ in stream:
        pass
    await client.responses.create(model="chat", input="ping")
    rstream = await client.responses.create(model="chat", input="ping", stream=True)
    async for _ in rstream:
        pass
    try:
        await client.chat.completions.create(model="broken", messages=msgs)
    except openai.APIStatusError:
        pass
    async with aiohttp.ClientSession() as http, http.get(proc.url + "/-/metrics") as resp:
        live = (await resp.json())["audit"]["vmx.audit"]
    await client.close()
    assert live["queued"] == 5
    assert await proc.stop() == 0
    db = proc.config_path.parent / "vmx-audit.db"
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM request_audit ORDER BY timestamp").fetchall()
        dump = "\n".join(str(tuple(r)) for r in rows)
    assert [(r["format"], r["stream"], r["status_code"]) for r in rows] == [
        ("chat-completions", 0, 200), ("chat-completions", 1, 200), ("responses", 0, 200),
        ("responses", 1, 200), ("chat-completions", 0, 502),
    ]
    assert rows[0]["correlation_id"] == "c-1" and rows[0]["prompt_tokens"] > 0
    assert rows[0]["cost"] > 0 and rows[4]["cost"] is None  # priced gpt-4o-mini; no usage on error
    assert rows[1]["completion_tokens"] > 0 and rows[1]["ttft_ms"] is not None
    assert rows[4]["error_code"] == "upstream_error"
    assert UPSTREAM_SECRET not in dump and KEY not in dump


def test_vmx_migrate_creates_then_reports_up_to_date(tmp_path: object) -> None:
    """``vmx migrate`` applies the schema once and is a no-op the second time."""
    cfg = tmp_path / "vmx.yaml"  # type: ignore[operator]
    cfg.write_text(f"storage: {{audit: 'sqlite:///{tmp_path}/m.db'}}\n")
    cmd = [sys.executable, "-c", "import sys; from vmx_server.cli import main; sys.exit(main())", "migrate", "--config", str(cfg)]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
    second = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
    assert first.stdout.strip() == "applied migrations: 1"
    assert second.stdout.strip() == "schema is up to date"


async def test_audit_and_usage_apis_need_the_admin_token(upstream: FakeOpenAI, vmx_factory: object) -> None:
    """With VMX_ADMIN_TOKEN set the APIs answer 401 without it, and the rows with it."""
    proc: VmxProcess = await vmx_factory(e2e_config(upstream), {"VMX_ADMIN_TOKEN": "adm-123"})  # type: ignore[operator]
    client = openai.AsyncOpenAI(base_url=proc.base_url(), api_key=KEY, max_retries=0)
    for _ in range(3):
        await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    await client.close()
    auth = {"Authorization": "Bearer adm-123"}
    async with aiohttp.ClientSession() as http:
        async with http.get(proc.url + "/v1/request-audit/acme/prod") as resp:
            assert resp.status == 401
        rows: list[object] = []
        async with asyncio.timeout(10):
            while len(rows) < 3:  # the writer commits off the request path; poll the API itself
                async with http.get(proc.url + "/v1/request-audit/acme/prod", headers=auth) as resp:
                    assert resp.status == 200
                    rows = (await resp.json())["data"]
        body = {"granularity": "hour", "metrics": {"requests": "sum", "cost": "sum"}, "dimensions": ["resource"]}
        async with http.post(proc.url + "/v1/request-usage/acme/prod", json=body, headers=auth) as resp:
            report = await resp.json()
    assert sum(p["requests"] for p in report["data"]) == 3
    assert {p["resource"] for p in report["data"]} == {"chat"}


def test_vmx_usage_prints_a_table_by_resource(tmp_path: object) -> None:
    """``vmx usage --by resource`` prints one line per resource with its request count."""
    import asyncio as aio

    from tests.audit.conftest import make_row
    from vmx_core.audit.store import open_store

    db = f"sqlite:///{tmp_path}/u.db"

    async def seed() -> None:
        store = open_store(db)
        await store.connect()
        await store.write([make_row(resource="chat") for _ in range(3)] + [make_row(resource="other", cost=0.5)])
        await store.aclose()

    aio.run(seed())
    cfg = tmp_path / "vmx.yaml"  # type: ignore[operator]
    cfg.write_text(f"storage: {{audit: '{db}'}}\nworkspaces: {{acme: {{environments: {{prod: {{}}}}}}}}\n")
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from vmx_server.cli import main; sys.exit(main())", "usage",
         "--config", str(cfg), "--since", "1h", "--by", "resource"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()
    assert out[0].split() == ["workspace", "environment", "resource", "requests", "errors", "tokens", "cost_usd", "avg_ms"]
    assert out[1].split()[:4] == ["acme", "prod", "chat", "3"]
    assert out[2].split()[:4] == ["acme", "prod", "other", "1"] and out[2].split()[6] == "0.500000"


async def test_payload_api_serves_the_redacted_bodies_of_one_request(upstream: FakeOpenAI, vmx_factory: object) -> None:
    """With ``audit.payloads: redacted`` the payload endpoint returns the bodies, minus secrets."""
    config = {**e2e_config(upstream), "audit": {"payloads": "redacted", "redact_paths": ["$.messages[*].content"]}}
    proc: VmxProcess = await vmx_factory(config, {"VMX_ADMIN_TOKEN": "adm-1"})  # type: ignore[operator]
    client = openai.AsyncOpenAI(base_url=proc.base_url(), api_key=KEY, max_retries=0)
    await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"my key {KEY}"}],
                                         extra_body={"vmx": {"providerArgs": {"api_key": UPSTREAM_SECRET}}})
    await client.close()
    auth = {"Authorization": "Bearer adm-1"}
    async with aiohttp.ClientSession(headers=auth) as http:
        rows: list[dict[str, object]] = []
        async with asyncio.timeout(10):
            while not rows:  # written off the request path: poll the API until the row is there
                async with http.get(proc.url + "/v1/request-audit/acme/prod") as resp:
                    rows = (await resp.json())["data"]
        url = f"{proc.url}/v1/request-audit/acme/prod/{rows[0]['id']}/payload"
        async with http.get(url) as resp:
            assert resp.status == 200
            text = await resp.text()
        async with http.get(url.replace("/prod/", "/staging/")) as resp:
            assert resp.status == 404  # another environment does not see it
    payload = orjson.loads(text)
    assert payload["client_body"]["messages"] == [{"role": "user", "content": "[REDACTED]"}]
    assert payload["upstream_body"]["api_key"] == "[REDACTED]"
    assert payload["response_body"]["object"] == "chat.completion"
    assert UPSTREAM_SECRET not in text and KEY not in text
