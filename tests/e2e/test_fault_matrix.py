"""The fault-injection matrix (issue 5): every upstream fault x streamed or not x client shape
(Chat Completions and Responses passed through, Anthropic Messages converted both ways).

Each cell asserts what the client sees, which legs ran, and that the server still serves. The
primary leg carries the fault; the resource falls back to a healthy model on the same fake.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import KEY
from tests.e2e.conftest import e2e_config
from tests.e2e.module_fixtures import servers, upstream  # noqa: F401
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHAT, RESPONSES, ANTHROPIC = "/chat/completions", "/responses", "/anthropic/v1/messages"
OK_MODEL = "gpt-4o-mini"

#: fault -> (primary model when streamed, when not, outcome when streamed, when not).
#: Outcomes: "fallback" = 200 from the healthy leg after the faulty one; "inband" = 200 whose
#: stream ends with an in-band error after content (no fallback: content had reached the
#: client); an int = that status with no fallback.  For a whole answer, "before the first byte"
#: is an upstream that never answers, and "mid-stream" is a body that stops half-way.
FAULTS: dict[str, tuple[str, str, str | int, str | int]] = {
    "500": ("status-500", "status-500", "fallback", "fallback"),
    "503": ("status-503", "status-503", "fallback", "fallback"),
    "429 + Retry-After": ("status-429", "status-429", "fallback", "fallback"),
    "connection refused": ("refused", "refused", "fallback", "fallback"),
    "timeout": ("hang", "hang", "fallback", "fallback"),
    "stall before first byte": ("stall-early", "hang", "fallback", "fallback"),
    "stall mid-stream": ("stall", "stall-body", "inband", "fallback"),
    "reset mid-stream": ("reset", "reset", "inband", "fallback"),
    "malformed JSON": ("bad-json", "bad-json", "inband", "fallback"),
    "malformed SSE": ("bad-sse", "bad-sse", "fallback", "fallback"),
    "400": ("status-400", "status-400", 400, 400),
    "401": ("status-401", "status-401", "fallback", "fallback"),
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(upstream: FakeOpenAI, servers: Any) -> VmxProcess:
    resources: dict[str, Any] = {}
    for i, (stream_model, whole_model, _, _) in enumerate(FAULTS.values()):
        for suffix, model in (("s", stream_model), ("w", whole_model)):
            resources[f"f{i}{suffix}"] = {
                # A short leg timeout and idle timeout keep the hanging and stalling cells fast.
                "model": {"connection": "dead" if model == "refused" else "up", "model": model, "timeout_ms": 1500},
                "fallback": [{"connection": "up", "model": OK_MODEL}],
                "stream_idle_timeout_ms": 400,
            }
    cfg = e2e_config(upstream, **resources)
    cfg["workspaces"]["acme"]["environments"]["prod"]["connections"]["dead"] = {
        "provider": "openai",
        "credentials": {"api_key": "sk-dead"},
        "options": {"base_url": f"http://127.0.0.1:{closed_port()}/v1"},
    }
    proc: VmxProcess = await servers(cfg)
    return proc


def body_for(endpoint: str, resource: str, stream: bool) -> dict[str, Any]:
    messages = [{"role": "user", "content": "one two three"}]
    if endpoint == CHAT:
        return {"model": resource, "messages": messages, "stream": stream}
    if endpoint == ANTHROPIC:
        # Converted to Chat Completions for the OpenAI-shaped upstream, and back.
        return {"model": resource, "messages": messages, "max_tokens": 64, "stream": stream}
    return {"model": resource, "input": "one two three", "stream": stream}


def frames(raw: bytes) -> list[tuple[str | None, str]]:
    out = []
    for block in raw.decode().split("\n\n"):
        event, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if data is not None:
            out.append((event, data))
    return out


def answer_text(endpoint: str, stream: bool, raw: bytes) -> str:
    if not stream:
        doc = json.loads(raw)
        if endpoint == ANTHROPIC:
            return "".join(b["text"] for b in doc["content"] if b["type"] == "text")
        return str(doc["choices"][0]["message"]["content"] if endpoint == CHAT else doc["output"][0]["content"][0]["text"])
    if endpoint == ANTHROPIC:
        return "".join(
            json.loads(d)["delta"].get("text", "") for e, d in frames(raw) if e == "content_block_delta"
        )
    if endpoint == CHAT:
        return "".join(
            json.loads(d)["choices"][0]["delta"].get("content") or ""
            for _, d in frames(raw) if d != "[DONE]" and json.loads(d).get("choices")
        )
    return "".join(json.loads(d)["delta"] for e, d in frames(raw) if e == "response.output_text.delta")


CELLS = [
    (fault, endpoint, stream)
    for fault in FAULTS
    for endpoint in (CHAT, RESPONSES, ANTHROPIC)
    for stream in (True, False)
]


@pytest.mark.parametrize(("fault", "endpoint", "stream"), CELLS, ids=[f"{f}-{e[1:]}-{'stream' if s else 'whole'}" for f, e, s in CELLS])
async def test_fault_cell(fault: str, endpoint: str, stream: bool, gw: VmxProcess, upstream: FakeOpenAI) -> None:
    """The client sees the documented outcome, the expected legs ran, and the server still serves."""
    resource = f"f{list(FAULTS).index(fault)}{'s' if stream else 'w'}"
    stream_model, whole_model, streamed_outcome, whole_outcome = FAULTS[fault]
    model, outcome = (stream_model, streamed_outcome) if stream else (whole_model, whole_outcome)
    upstream.reset()
    headers = {"authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.base_url() + endpoint, json=body_for(endpoint, resource, stream), headers=headers) as resp:
            status, raw, attempts = resp.status, await resp.read(), resp.headers.get("x-vmx-attempts")
        legs = [r["body"]["model"] for r in upstream.requests]
        faulty_leg_seen = [] if model == "refused" else [model]
        if outcome == "fallback":
            assert status == 200, raw
            assert answer_text(endpoint, stream, raw).strip() == "echo: one two three"
            assert legs == [*faulty_leg_seen, OK_MODEL]
            assert attempts == "2"
        elif outcome == "inband":
            assert status == 200
            last_event, last_data = frames(raw)[-1]
            if endpoint == CHAT:
                assert last_data != "[DONE]" and json.loads(last_data)["error"]["code"] == "upstream_error"
            elif endpoint == ANTHROPIC:
                assert last_event == "error" and json.loads(last_data)["error"]["type"] == "api_error"
                assert "message_stop" not in [e for e, _ in frames(raw)]
            else:
                assert last_event == "error" and json.loads(last_data)["code"] == "upstream_error"
            assert answer_text(endpoint, stream, raw[: raw.rfind(b"data: ")]).startswith("echo:")
            assert legs == [model]
        else:
            assert status == outcome
            assert legs == [model]
        # The server still serves, on the same connection pool.
        async with http.post(gw.base_url() + endpoint, json=body_for(endpoint, "chat", False), headers={**headers, "x-api-key": KEY}) as resp:
            assert resp.status == 200
