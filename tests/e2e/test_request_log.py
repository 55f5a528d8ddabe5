"""One canonical structlog JSON line per request: names, status and durations, never a secret."""

from __future__ import annotations

import json

import openai

from tests.conftest import KEY
from tests.e2e.conftest import UPSTREAM_SECRET
from tests.fakes.server import VmxProcess


async def test_each_request_logs_one_json_line_with_its_facts(vmx: VmxProcess) -> None:
    """The line carries request id, resource, connection, model, status and stage timings."""
    client = openai.AsyncOpenAI(base_url=vmx.base_url(), api_key=KEY, max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], extra_body={"vmx": {"correlationId": "c-9"}}
    )
    streamed = await client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    _ = [c async for c in streamed.parse()]
    await client.close()
    ids = [raw.headers["x-vmx-request-id"], streamed.headers["x-vmx-request-id"]]
    lines = [json.loads(await vmx.wait_for_output(lambda line, i=i: i in line)) for i in ids]
    whole, stream = lines
    assert whole["event"] == "request" and whole["level"] == "info"
    assert (whole["resource"], whole["connection"], whole["provider"], whole["model"]) == ("chat", "up", "openai", "gpt-4o-mini")
    assert whole["status"] == 200 and whole["correlation_id"] == "c-9" and whole["api_key"] == "app"
    assert whole["duration_ms"] >= whole["upstream_ms"] > 0 and {"auth", "parse", "routing"} <= set(whole["stages_ms"])
    assert whole["prompt_tokens"] == 11
    assert stream["stream"] is True and stream["ttft_ms"] is not None and stream["status"] == 200
    assert sum(1 for line in vmx.output().splitlines() if ids[0] in line) == 1
    assert UPSTREAM_SECRET not in vmx.output() and KEY not in vmx.output()
