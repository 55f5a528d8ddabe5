"""End to end: a real ``vmx serve`` writes one audit row per request into its SQLite file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import aiohttp
import openai

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
