"""The official ``openai`` SDK (Chat Completions and Responses, streaming, tools) through a real
``vmx serve`` to the Anthropic fake: requests, answers and streams are converted, and every
answer is checked against OpenAI's official OpenAPI spec (``tests/e2e/spec.py``)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import KEY
from tests.e2e import spec
from tests.e2e.convert_config import convert_config
from tests.fakes.anthropic_upstream import SIGNATURE, TOOL_INPUT, FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess
from tests.wire.chat_clients import without_index

PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": PARAMS}}
RESP_TOOL = {"type": "function", "name": "get_weather", "description": "Weather", "parameters": PARAMS, "strict": False}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client(upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic, vmx_factory: Any) -> Any:
    proc: VmxProcess = await vmx_factory(convert_config(upstream, anthropic_upstream))
    c = openai.AsyncOpenAI(base_url=proc.base_url(), api_key=KEY, max_retries=0)
    yield c
    await c.close()


async def test_chat_create_text(client: Any, anthropic_upstream: FakeAnthropic) -> None:
    """Chat on an Anthropic resource: an Anthropic body goes up (system hoisted, max_tokens
    filled in), a Chat completion with OpenAI usage (prompt includes cache) comes back."""
    completion = await client.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "system", "content": "be brief"}, *HI]
    )
    body = json.loads(completion.text)
    spec.validate(body, "CreateChatCompletionResponse")
    assert body["choices"][0]["message"]["content"] == "echo: hi"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 16 and body["usage"]["prompt_tokens_details"]["cached_tokens"] == 3
    sent = anthropic_upstream.requests[0]["body"]
    assert (sent["system"], sent["messages"], sent["max_tokens"]) == ("be brief", HI, 4096)


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream_tool_call(client: Any, include_usage: bool) -> None:
    """A streamed Anthropic tool_use arrives as Chat tool_call deltas whose arguments add up
    to the whole input; the usage chunk appears only when the client asked for it."""
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = await client.chat.completions.create(model="claude", messages=HI, tools=[CHAT_TOOL], stream=True, **extra)
    chunks = [chunk.to_dict(mode="json") async for chunk in stream]
    for chunk in chunks:
        spec.validate(chunk, "CreateChatCompletionStreamResponse")
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [tc for d in deltas for tc in d.get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"].startswith("toolu_")
    assert json.loads("".join(tc["function"].get("arguments") or "" for tc in calls)) == TOOL_INPUT
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check."
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage == ([{"prompt_tokens": 16, "completion_tokens": usage[0]["completion_tokens"], "total_tokens": usage[0]["total_tokens"],
                       "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 0}}]
                     if include_usage else [])


async def test_chat_tool_result_and_reasoning(client: Any, anthropic_upstream: FakeAnthropic) -> None:
    """A tool result goes up as a tool_result block; reasoning_effort becomes a thinking budget
    and the thinking comes back as reasoning_content with its signature."""
    turn = [*HI, {"role": "assistant", "content": None, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}]
    raw = await client.chat.completions.with_raw_response.create(
        model="claude", messages=turn, tools=[CHAT_TOOL], reasoning_effort="low", max_completion_tokens=4000
    )
    body = json.loads(raw.text)
    message = body["choices"][0]["message"]
    assert message["content"] == "result: 18C"
    assert message["reasoning_content"] == "Let me think about this."
    assert message["thinking_blocks"][0]["signature"] == SIGNATURE
    sent = anthropic_upstream.requests[0]["body"]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]}]}


async def test_chat_stream_thinking_signature_goes_back_signed(client: Any, anthropic_upstream: FakeAnthropic) -> None:
    """A streamed Chat answer from Claude with thinking: the SDK's stream helper folds the
    thinking_blocks deltas into the signed block the upstream sent, and the assistant message
    sent back on the next turn reaches Anthropic as that signed thinking block."""
    thought = {"type": "thinking", "thinking": "Let me think about this.", "signature": SIGNATURE}
    thinking = {"reasoning_effort": "low", "max_completion_tokens": 4000}
    async with client.chat.completions.stream(model="claude", messages=HI, tools=[CHAT_TOOL], **thinking) as stream:
        chunks = [ev.chunk.to_dict(mode="json") async for ev in stream if ev.type == "chunk"]
        final = await stream.get_final_completion()
    for chunk in chunks:
        spec.validate(chunk, "CreateChatCompletionStreamResponse")
    message = final.choices[0].message.to_dict(mode="json")
    assert message["reasoning_content"] == thought["thinking"]
    assert without_index(message["thinking_blocks"]) == [thought]
    call = message["tool_calls"][0]
    # The whole assistant message goes back, as clients append it to their history.
    turn = [*HI, message, {"role": "tool", "tool_call_id": call["id"], "content": "18C"}]
    answer = await client.chat.completions.create(model="claude", messages=turn, tools=[CHAT_TOOL], **thinking)
    assert answer.choices[0].message.content == "result: 18C"
    sent = anthropic_upstream.requests[1]["body"]
    assert sent["messages"][1] == {"role": "assistant", "content": [
        thought, {"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": call["id"], "name": "get_weather", "input": TOOL_INPUT}]}


async def test_responses_create_with_tools(client: Any, anthropic_upstream: FakeAnthropic) -> None:
    """Responses on an Anthropic resource: instructions become the system prompt, the answer
    is a valid Response with a message and a function_call item."""
    raw = await client.responses.with_raw_response.create(
        model="claude", input="hi", instructions="be brief", tools=[RESP_TOOL], max_output_tokens=300
    )
    body = json.loads(raw.text)
    spec.validate(body, "Response")
    kinds = [item["type"] for item in body["output"]]
    assert kinds == ["message", "function_call"]
    assert json.loads(body["output"][1]["arguments"]) == TOOL_INPUT
    assert body["usage"]["input_tokens"] == 16
    sent = anthropic_upstream.requests[0]["body"]
    assert (sent["system"], sent["max_tokens"], sent["tools"][0]["name"]) == ("be brief", 300, "get_weather")


async def test_responses_stream_text(client: Any) -> None:
    """A streamed Responses answer from Anthropic: the SDK's stream helper assembles the final
    response with text and usage (raw events are spec-checked in the tool-call test)."""
    seen: list[str] = []
    async with client.responses.stream(model="claude", input="hi there") as stream:
        async for event in stream:
            seen.append(event.type)
        final = await stream.get_final_response()
    assert final.output_text == "echo: hi there"
    assert seen[0] == "response.created" and seen[-1] == "response.completed"
    assert final.usage is not None and final.usage.input_tokens == 16


async def test_responses_stream_tool_call(client: Any) -> None:
    """A streamed tool call reaches a Responses client as function_call_arguments deltas that
    add up to the whole input."""
    stream = await client.responses.create(model="claude", input="hi", tools=[RESP_TOOL], stream=True)
    events = [ev.to_dict(mode="json") async for ev in stream]
    for ev in events:
        spec.validate_response_event(ev)
    args = "".join(ev["delta"] for ev in events if ev["type"] == "response.function_call_arguments.delta")
    assert json.loads(args) == TOOL_INPUT
    done = events[-1]["response"]
    assert [o["type"] for o in done["output"]] == ["message", "function_call"]
