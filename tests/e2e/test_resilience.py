"""Upstream failures against a real ``vmx serve``: non-JSON, HTML pages, truncated and stalled
streams, dropped connections, hangs, client disconnects, fallback (DESIGN §6, §9), and no
secret in any answer or log line."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio

from tests.conftest import KEY
from tests.e2e.conftest import UPSTREAM_SECRET, e2e_config
from tests.e2e.module_fixtures import servers, upstream  # noqa: F401
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess
from vmx_core.secrets import mask

# One fake upstream and one gateway (one resource per behaviour) serve the module; the fake is
# reset before each test, and every test that leaves an upstream call open waits for its end.
pytestmark = pytest.mark.asyncio(loop_scope="module")

CHAT, RESPONSES, ANTHROPIC = "/chat/completions", "/responses", "/anthropic/v1/messages"
MESSAGES = [{"role": "user", "content": "ping"}]


def ref(model: str, **extra: Any) -> dict[str, Any]:
    return {"connection": "up", "model": model, **extra}


def config(upstream: FakeOpenAI) -> dict[str, Any]:
    cfg = e2e_config(
        upstream,
        nonjson="non-json", html="html-error", closer="close", trunc="truncate", hang="hang", leak="leak-key",
        stall={"model": ref("stall"), "stream_idle_timeout_ms": 300},
        stall_slow={"model": ref("stall")},  # the default 60 s idle timeout: only a disconnect ends it
        fb5xx={"model": ref("status-500"), "fallback": [ref("gpt-4o-mini")]},
        fb4xx={"model": ref("status-400"), "fallback": [ref("gpt-4o-mini")]},
        fb4xx_on={"model": ref("status-400"), "fallback": [ref("gpt-4o-mini")], "fallback_on": [400]},
        retry429={"model": ref("status-429", max_retries=1), "fallback": [ref("gpt-4o-mini")]},
        allfail={"model": ref("status-503"), "fallback": [ref("html-error"), ref("close"), ref("non-json")]},
        mcut={"model": {"connection": "mcut", "model": "mock-1"}},
    )
    env = cfg["workspaces"]["acme"]["environments"]["prod"]
    env["connections"]["mcut"] = {"provider": "mock", "options": {"fail_after_chunks": 4}}
    return cfg


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(upstream: FakeOpenAI, servers: Any) -> VmxProcess:
    proc: VmxProcess = await servers(config(upstream))
    return proc


@pytest_asyncio.fixture(loop_scope="module")
async def http(upstream: FakeOpenAI) -> AsyncIterator[aiohttp.ClientSession]:
    upstream.reset()
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {KEY}"}) as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any, bytes]:
    """POST and return (status, headers, raw body)."""
    async with http.post(url, json=body) as resp:
        return resp.status, resp.headers, await resp.read()


def frames(raw: bytes) -> list[tuple[str | None, str]]:
    """SSE ``(event, data)`` pairs."""
    out = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if event or data:
            out.append((event, "\n".join(data)))
    return out


def openai_error(raw: bytes | str | dict[str, Any], code: str) -> dict[str, Any]:
    """The OpenAI error object, after checking its exact shape and code."""
    body = raw if isinstance(raw, dict) else json.loads(raw)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}, body
    assert body["error"]["code"] == code, body
    return dict(body["error"])


def upstream_models(upstream: FakeOpenAI) -> list[str]:
    return [r["body"]["model"] for r in upstream.requests]


async def assert_still_serving(http: aiohttp.ClientSession, vmx: VmxProcess) -> None:
    status, _, raw = await post(http, vmx.base_url() + CHAT, {"model": "chat", "messages": MESSAGES})
    assert status == 200, raw
    assert json.loads(raw)["choices"][0]["message"]["content"] == "echo: ping"


@pytest.mark.parametrize("endpoint", [CHAT, RESPONSES])
@pytest.mark.parametrize(
    ("resource", "leg"),
    [("nonjson", "up/non-json: protocol_error"), ("html", "up/html-error: HTTP 502"), ("closer", "up/close: connection_error")],
)
async def test_unusable_upstream_answer_is_502(
    gw: VmxProcess, http: aiohttp.ClientSession, endpoint: str, resource: str, leg: str
) -> None:
    """Non-JSON, an HTML error page or a closed connection is a 502 upstream_error naming the leg."""
    body = {"model": resource, "messages": MESSAGES} if endpoint == CHAT else {"model": resource, "input": "ping"}
    status, headers, raw = await post(http, gw.base_url() + endpoint, body)
    assert status == 502
    assert headers["content-type"].startswith("application/json")
    message = openai_error(raw, "upstream_error")["message"]
    assert leg in message
    assert "<html" not in message and "this is not json" not in message
    await assert_still_serving(http, gw)


@pytest.mark.parametrize("resource", ["html", "nonjson", "closer"])
async def test_stream_failing_before_its_first_byte_is_a_plain_502(gw: VmxProcess, http: aiohttp.ClientSession, resource: str) -> None:
    """A stream whose upstream fails before any event is an ordinary 502 JSON answer, not an SSE body."""
    status, headers, raw = await post(http, gw.base_url() + CHAT, {"model": resource, "messages": MESSAGES, "stream": True})
    assert status == 502
    assert headers["content-type"].startswith("application/json")
    openai_error(raw, "upstream_error")


async def test_truncated_chat_stream_ends_with_inband_error(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """A chat stream cut before its end ends with ``data: {"error": ...}`` and no ``[DONE]``."""
    status, _, raw = await post(http, gw.base_url() + CHAT, {"model": "trunc", "messages": MESSAGES, "stream": True})
    assert status == 200
    data = [d for _, d in frames(raw)]
    assert "[DONE]" not in data
    assert "truncated" in openai_error(data[-1], "upstream_error")["message"]
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in data[:-1])
    assert text.startswith("echo:")
    await assert_still_serving(http, gw)


async def test_openai_sdk_raises_on_truncated_chat_stream(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """The official openai SDK raises ``APIError`` while iterating a truncated stream, after the first chunks."""
    client = openai.AsyncOpenAI(base_url=gw.base_url(), api_key=KEY, max_retries=0)
    stream = await client.chat.completions.create(model="trunc", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    chunks = []
    with pytest.raises(openai.APIError, match="truncated"):
        async for chunk in stream:
            chunks.append(chunk)
    await client.close()
    assert chunks and chunks[0].choices[0].delta.role == "assistant"


async def test_truncated_responses_stream_ends_with_error_event(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """A Responses stream cut before ``response.completed`` ends with an ``event: error``."""
    status, _, raw = await post(http, gw.base_url() + RESPONSES, {"model": "trunc", "input": "ping", "stream": True})
    assert status == 200, raw
    events = frames(raw)
    assert events[0][0] == "response.created"
    assert "response.completed" not in [e for e, _ in events]
    kind, data = events[-1]
    payload = json.loads(data)
    assert kind == "error" and payload["type"] == "error" and payload["code"] == "upstream_error"
    assert "truncated" in payload["message"]


async def test_truncated_anthropic_stream_ends_with_error_event(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """An Anthropic stream cut before ``message_stop`` ends with an Anthropic ``event: error``; the SDK raises."""
    body = {"model": "mcut", "max_tokens": 16, "messages": MESSAGES, "stream": True}
    status, _, raw = await post(http, gw.base_url() + ANTHROPIC, body)
    assert status == 200
    events = frames(raw)
    assert "message_stop" not in [e for e, _ in events]
    kind, data = events[-1]
    assert kind == "error"
    payload = json.loads(data)
    assert payload["type"] == "error" and payload["error"]["type"] == "api_error"
    client = anthropic.AsyncAnthropic(base_url=gw.base_url() + "/anthropic", api_key=KEY, max_retries=0)
    stream = await client.messages.create(model="mcut", max_tokens=16, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    seen = []
    with pytest.raises(anthropic.APIError, match="truncated"):
        async for event in stream:
            seen.append(event.type)
    await client.close()
    assert seen[0] == "message_start"


async def test_stalled_stream_ends_inband_and_closes_upstream(gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    """A stream silent for ``stream_idle_timeout_ms`` ends with an in-band error and the upstream is closed."""
    started = time.perf_counter()
    status, _, raw = await post(http, gw.base_url() + CHAT, {"model": "stall", "messages": MESSAGES, "stream": True})
    assert status == 200
    data = [d for _, d in frames(raw)]
    assert "[DONE]" not in data
    assert "stalled" in openai_error(data[-1], "upstream_error")["message"]
    assert time.perf_counter() - started < 5
    async with asyncio.timeout(5):
        await upstream.cancelled_event.wait()


async def test_client_disconnect_cancels_hanging_upstream(gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    """A client that gives up on a non-streaming call makes the gateway close the upstream connection."""
    call = asyncio.create_task(post(http, gw.base_url() + CHAT, {"model": "hang", "messages": MESSAGES}))
    async with asyncio.timeout(5):
        await upstream.received_event.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    async with asyncio.timeout(5):
        await upstream.cancelled_event.wait()
    await assert_still_serving(http, gw)


async def test_client_closing_a_stream_cancels_stalled_upstream(gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    """A client that closes a stream mid-way makes the gateway close the upstream connection."""
    body = {"model": "stall_slow", "messages": MESSAGES, "stream": True}
    async with http.post(gw.base_url() + CHAT, json=body) as resp:
        assert resp.status == 200
        async for line in resp.content:
            if b"echo:" in line:
                break
        else:
            pytest.fail("the stream ended before its first content chunk")
        resp.close()
    async with asyncio.timeout(5):
        await upstream.cancelled_event.wait()
    await assert_still_serving(http, gw)


@pytest.mark.parametrize("stream", [False, True])
async def test_5xx_falls_back_to_the_next_leg(gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession, stream: bool) -> None:
    """A 500 from the primary fails over to the fallback: 200 with ``x-vmx-attempts: 2``."""
    status, headers, raw = await post(http, gw.base_url() + CHAT, {"model": "fb5xx", "messages": MESSAGES, "stream": stream})
    assert status == 200
    assert headers["x-vmx-attempts"] == "2"
    assert headers["x-vmx-model"] == "gpt-4o-mini"
    assert upstream_models(upstream) == ["status-500", "gpt-4o-mini"]
    if stream:
        assert frames(raw)[-1] == (None, "[DONE]")
    else:
        assert json.loads(raw)["choices"][0]["message"]["content"] == "echo: ping"


async def test_4xx_is_passed_through_without_fallback(gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    """A 400 from the primary is the client's fault: passed through, no fallback leg tried."""
    status, headers, raw = await post(http, gw.base_url() + CHAT, {"model": "fb4xx", "messages": MESSAGES})
    assert status == 400
    assert "fake upstream error 400" in openai_error(raw, "fake_400")["message"]
    assert upstream_models(upstream) == ["status-400"]
    assert headers["x-vmx-attempts"] == "1"


async def test_fallback_on_lists_a_4xx(gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    """With ``fallback_on: [400]`` a 400 from the primary fails over."""
    status, headers, _ = await post(http, gw.base_url() + CHAT, {"model": "fb4xx_on", "messages": MESSAGES})
    assert status == 200
    assert headers["x-vmx-attempts"] == "2"
    assert upstream_models(upstream) == ["status-400", "gpt-4o-mini"]


async def test_429_is_retried_after_retry_after_when_it_fits(gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    """A 429 on a leg with ``max_retries: 1`` is retried once after its ``Retry-After`` (1 s), then falls back."""
    started = time.perf_counter()
    status, headers, _ = await post(http, gw.base_url() + CHAT, {"model": "retry429", "messages": MESSAGES})
    assert status == 200
    assert time.perf_counter() - started >= 1.0
    assert upstream_models(upstream) == ["status-429", "status-429", "gpt-4o-mini"]
    assert headers["x-vmx-attempts"] == "3"


async def test_429_retry_after_beyond_deadline_fails_over_at_once(gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    """A ``Retry-After`` longer than the remaining deadline is not waited for: the next leg is tried at once."""
    started = time.perf_counter()
    body = {"model": "retry429", "messages": MESSAGES, "vmx": {"timeoutMs": 800}}
    status, headers, _ = await post(http, gw.base_url() + CHAT, body)
    assert status == 200
    assert time.perf_counter() - started < 0.8
    assert upstream_models(upstream) == ["status-429", "gpt-4o-mini"]
    assert headers["x-vmx-attempts"] == "2"


async def test_every_leg_failing_is_502_naming_each_leg(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """When every leg fails the answer is 502 upstream_error and its message names each leg's failure."""
    status, headers, raw = await post(http, gw.base_url() + CHAT, {"model": "allfail", "messages": MESSAGES})
    assert status == 502
    message = openai_error(raw, "upstream_error")["message"]
    for leg in ("up/status-503: HTTP 503", "up/html-error: HTTP 502", "up/close: connection_error", "up/non-json: protocol_error"):
        assert leg in message
    assert headers["x-vmx-attempts"] == "4"


@pytest.mark.parametrize("stream", [False, True])
async def test_deadline_against_hanging_upstream_is_504(gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession, stream: bool) -> None:
    """``vmx.timeoutMs: 300`` against an upstream that never answers is a 504 upstream_timeout, and the call is abandoned."""
    body = {"model": "hang", "messages": MESSAGES, "stream": stream, "vmx": {"timeoutMs": 300}}
    for _ in range(4):  # the deadline timer and the gateway's clock race: one try could pass by luck
        upstream.reset()
        started = time.perf_counter()
        status, _, raw = await post(http, gw.base_url() + CHAT, body)
        assert status == 504, raw
        openai_error(raw, "upstream_timeout")
        assert time.perf_counter() - started < 3
        async with asyncio.timeout(5):
            await upstream.cancelled_event.wait()


@pytest.mark.parametrize(("endpoint", "stream"), [(CHAT, False), (CHAT, True), (RESPONSES, False)])
async def test_upstream_error_quoting_the_credential_is_masked(
    gw: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession, endpoint: str, stream: bool
) -> None:
    """An upstream 401 quoting the connection's key is the gateway's fault: a 502 naming it, masked."""
    body: dict[str, Any] = {"model": "leak", "stream": stream}
    body.update({"messages": MESSAGES} if endpoint == CHAT else {"input": "ping"})
    status, _, raw = await post(http, gw.base_url() + endpoint, body)
    assert upstream.requests[-1]["headers"]["Authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert status == 502
    message = openai_error(raw, "upstream_error")["message"]
    assert UPSTREAM_SECRET not in raw.decode()
    assert f"Incorrect API key provided: {mask(UPSTREAM_SECRET)}" in message


async def test_no_secret_in_any_answer_or_log_line(upstream: FakeOpenAI, servers: Any, http: aiohttp.ClientSession) -> None:
    """After every kind of failure, neither the connection key nor the client key is in an answer or the log."""
    vmx: VmxProcess = await servers(config(upstream), env={"VMX_LOG_LEVEL": "debug"})
    url = vmx.base_url()
    calls: list[tuple[str, dict[str, Any]]] = [(CHAT, {"model": m, "messages": MESSAGES, "stream": s})
                                               for m in ("leak", "nonjson", "html", "closer", "allfail", "fb4xx", "trunc", "stall")
                                               for s in (False, True)]
    calls += [(RESPONSES, {"model": "leak", "input": "ping"}), (RESPONSES, {"model": "trunc", "input": "ping", "stream": True}),
              (CHAT, {"model": "hang", "messages": MESSAGES, "vmx": {"timeoutMs": 200}}),
              (ANTHROPIC, {"model": "mcut", "max_tokens": 8, "messages": MESSAGES, "stream": True}),
              (CHAT, {"model": "chat", "messages": "x"})]
    answers = [await post(http, url + endpoint, body) for endpoint, body in calls]
    async with http.post(url + CHAT, data=b"{", headers={"authorization": f"Bearer {KEY}x"}) as resp:
        answers.append((resp.status, resp.headers, await resp.read()))
    async with http.post(url + CHAT, data=b"x" * 70_000) as resp:
        answers.append((resp.status, resp.headers, await resp.read()))
    statuses = [status for status, _, _ in answers]
    assert {401, 400, 413, 502, 504} <= set(statuses) and 200 in statuses
    for _, headers, raw in answers:
        for secret in (UPSTREAM_SECRET, KEY):
            assert secret not in raw.decode()
            assert all(secret not in value for value in headers.values())
    await vmx.stop()  # flushes everything it logged
    log = vmx.output()
    events = [json.loads(line).get("event") for line in log.splitlines() if line.startswith("{")]
    assert events.count("request") >= len(calls)
    assert UPSTREAM_SECRET not in log
    assert KEY not in log
