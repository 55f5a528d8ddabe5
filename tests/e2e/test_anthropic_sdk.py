"""The official ``anthropic`` SDK through a real ``vmx serve``: converted to the OpenAI fake, and
passed through verbatim to the Anthropic fake (``tests/fakes/anthropic_upstream.py``)."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.conftest import KEY
from tests.e2e.convert_config import convert_config
from tests.fakes.anthropic_upstream import SIGNATURE, TOOL_INPUT, FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess

WEATHER = {
    "name": "get_weather",
    "description": "Weather by city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def gateway(upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic, vmx_factory: Any) -> VmxProcess:
    proc: VmxProcess = await vmx_factory(convert_config(upstream, anthropic_upstream))
    return proc


@pytest.fixture
async def client(gateway: VmxProcess) -> Any:
    c = anthropic.AsyncAnthropic(base_url=gateway.base_url() + "/anthropic", api_key=KEY, max_retries=0)
    yield c
    await c.close()


async def test_create_text_through_openai_upstream(client: Any, upstream: FakeOpenAI) -> None:
    """messages.create on an OpenAI resource: a Chat body goes up, an Anthropic Message with
    Anthropic usage (input excludes cache reads) comes back."""
    msg = await client.messages.create(model="gpt", max_tokens=50, system="be brief", messages=HI)
    assert msg.content[0].text == "echo: hi"
    assert msg.stop_reason == "end_turn"
    # The fake reports prompt_tokens 11 of which 3 cached: Anthropic says 8 + 3 cache reads.
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens) == (8, 3)
    sent = upstream.requests[0]
    assert sent["path"].endswith("/chat/completions")
    assert sent["body"]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert sent["body"]["max_completion_tokens"] == 50


async def test_stream_text_through_openai_upstream(client: Any, upstream: FakeOpenAI) -> None:
    """messages.stream on an OpenAI resource: text deltas, a message_start with non-zero input
    usage, and the real usage in the final message."""
    async with client.messages.stream(model="gpt", max_tokens=50, messages=HI) as stream:
        events = [ev async for ev in stream]
        final = await stream.get_final_message()
    start = next(ev for ev in events if ev.type == "message_start")
    assert start.message.usage.input_tokens > 0
    assert "".join(ev.text for ev in events if ev.type == "text").strip() == "echo: hi"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (8, 2)
    assert upstream.requests[0]["body"]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("resource", ["gpt", "claude"])
async def test_tool_use_round_trip(client: Any, resource: str) -> None:
    """A streamed tool call (arguments in pieces) ends as one tool_use with the whole input,
    and the tool result goes back as the next turn, on either upstream."""
    async with client.messages.stream(model=resource, max_tokens=200, tools=[WEATHER], messages=HI) as stream:
        json_pieces = [ev.partial_json async for ev in stream if ev.type == "input_json"]
        final = await stream.get_final_message()
    call = next(b for b in final.content if b.type == "tool_use")
    assert (call.name, call.input, final.stop_reason) == ("get_weather", TOOL_INPUT, "tool_use")
    assert len([p for p in json_pieces if p]) >= 2
    turn2 = [*HI, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}]}]
    answer = await client.messages.create(model=resource, max_tokens=200, tools=[WEATHER], messages=turn2)
    assert "18C" in answer.content[0].text
    assert answer.stop_reason == "end_turn"


async def test_tool_use_create_through_openai_upstream(client: Any, upstream: FakeOpenAI) -> None:
    """messages.create with tool_choice any: OpenAI gets tools and tool_choice required; the
    client gets a tool_use block."""
    msg = await client.messages.create(
        model="gpt", max_tokens=100, tools=[WEATHER], tool_choice={"type": "any"}, messages=HI
    )
    assert [b.type for b in msg.content] == ["tool_use"]
    assert msg.content[0].input == TOOL_INPUT
    body = upstream.requests[0]["body"]
    assert body["tool_choice"] == "required"
    assert body["tools"][0]["function"]["name"] == "get_weather"


async def test_passthrough_keeps_anthropic_fields(client: Any, anthropic_upstream: FakeAnthropic) -> None:
    """On the Anthropic upstream the body arrives verbatim (cache_control, thinking, top_k,
    service_tier), betas travel as the anthropic-beta header, and thinking comes back signed."""
    system = [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]
    msg = await client.beta.messages.create(
        model="claude", max_tokens=2000, system=system, messages=HI, service_tier="auto", extra_body={"top_k": 5},
        thinking={"type": "enabled", "budget_tokens": 1024}, betas=["interleaved-thinking-2025-05-14"],
    )
    assert msg.content[0].type == "thinking" and msg.content[0].signature == SIGNATURE
    assert msg.content[1].text == "echo: hi"
    sent = anthropic_upstream.requests[0]
    assert sent["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent["body"]["system"] == system
    assert sent["body"]["model"] == "claude-sonnet-4-5"
    assert (sent["body"]["top_k"], sent["body"]["service_tier"]) == (5, "auto")


async def test_stream_thinking_passthrough(client: Any) -> None:
    """A streamed thinking block keeps its signature through the gateway."""
    async with client.messages.stream(
        model="claude", max_tokens=2000, messages=HI, thinking={"type": "enabled", "budget_tokens": 1024}
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "thinking"
    assert (final.content[0].thinking, final.content[0].signature) == ("Let me think about this.", SIGNATURE)
    assert (final.usage.input_tokens, final.usage.cache_creation_input_tokens, final.usage.cache_read_input_tokens) == (11, 2, 3)


async def test_unconvertible_feature_is_a_400_naming_it(client: Any, upstream: FakeOpenAI) -> None:
    """top_k has no OpenAI equivalent: the gateway answers 400 naming it and sends nothing."""
    with pytest.raises(anthropic.BadRequestError, match="top_k"):
        await client.messages.create(model="gpt", max_tokens=50, messages=HI, extra_body={"top_k": 3})
    assert upstream.requests == []


async def test_count_tokens_native_and_estimated(client: Any, anthropic_upstream: FakeAnthropic) -> None:
    """messages.count_tokens asks Anthropic for an Anthropic resource and estimates for others,
    saying which in x-vmx-token-count."""
    native = await client.messages.with_raw_response.count_tokens(model="claude", messages=HI)
    assert (await native.parse()).input_tokens == 10  # the fake's count: 7 + 3 per message
    assert native.headers["x-vmx-token-count"] == "provider"
    assert anthropic_upstream.requests[0]["path"] == "/v1/messages/count_tokens"
    assert anthropic_upstream.requests[0]["body"]["model"] == "claude-sonnet-4-5"
    estimated = await client.messages.with_raw_response.count_tokens(model="gpt", messages=HI)
    assert estimated.headers["x-vmx-token-count"] == "estimate"
    assert 0 < (await estimated.parse()).input_tokens < 20
