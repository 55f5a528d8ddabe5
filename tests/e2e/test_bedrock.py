"""``bedrock`` (Converse) and ``bedrock-invoke`` end to end: a real ``vmx serve`` signs with botocore's SigV4 (credentials
from boto3's chain, here the environment) and talks to a fake Bedrock that verifies every
signature with botocore and streams real event-stream frames."""

from __future__ import annotations

import base64
import json
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import KEY
from tests.e2e import spec
from tests.e2e.conftest import e2e_config
from tests.fakes.anthropic_upstream import SIGNATURE, TOOL_INPUT
from tests.fakes.bedrock_upstream import AWS_ENV, REGION, FakeBedrock, token_count
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
WEATHER = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
HI = [{"role": "user", "content": "hi"}]


def bedrock_config(upstream: FakeOpenAI, bedrock: FakeBedrock) -> dict[str, Any]:
    config = e2e_config(upstream)
    prod = config["workspaces"]["acme"]["environments"]["prod"]
    prod["connections"]["aws"] = {"provider": "bedrock-invoke", "options": {"region": REGION, "base_url": bedrock.base_url}}
    prod["resources"]["claude"] = {"model": {"connection": "aws", "model": MODEL}}
    prod["resources"]["throttled"] = {"model": {"connection": "aws", "model": "throttle"}}
    prod["connections"]["converse"] = {"provider": "bedrock", "options": {"region": REGION, "base_url": bedrock.base_url}}
    prod["resources"]["nova"] = {"model": {"connection": "converse", "model": "amazon.nova-pro-v1:0"}}
    prod["resources"]["claude-converse"] = {"model": {"connection": "converse", "model": MODEL}}
    # A cross-Region inference profile: Bedrock cannot count tokens through one.
    prod["resources"]["claude-profile"] = {"model": {"connection": "aws", "model": "us." + MODEL}}
    return config


@pytest.fixture
async def gateway(upstream: FakeOpenAI, bedrock_upstream: FakeBedrock, vmx_factory: Any) -> VmxProcess:
    proc: VmxProcess = await vmx_factory(bedrock_config(upstream, bedrock_upstream), env=AWS_ENV)
    return proc


@pytest.fixture
async def claude(gateway: VmxProcess) -> Any:
    c = anthropic.AsyncAnthropic(base_url=gateway.base_url() + "/anthropic", api_key=KEY, max_retries=0)
    yield c
    await c.close()


async def test_invoke_passthrough_keeps_thinking_cache_and_betas(claude: Any, bedrock_upstream: FakeBedrock) -> None:
    """messages.create reaches InvokeModel signed, with the Anthropic body minus model and
    stream, anthropic_version for Bedrock, betas in the body and cache markers intact."""
    system = [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]
    msg = await claude.beta.messages.create(
        model="claude", max_tokens=2000, system=system, messages=HI,
        thinking={"type": "enabled", "budget_tokens": 1024}, betas=["interleaved-thinking-2025-05-14"],
    )
    assert (msg.content[0].type, msg.content[0].signature) == ("thinking", SIGNATURE)
    assert msg.content[1].text == "echo: hi"
    sent = bedrock_upstream.requests[0]
    assert sent["path"] == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    assert sent["body"]["anthropic_version"] == "bedrock-2023-05-31"
    assert sent["body"]["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert sent["body"]["system"] == system and "model" not in sent["body"]
    assert sent["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIA")


async def test_invoke_stream_tool_use(claude: Any, bedrock_upstream: FakeBedrock) -> None:
    """messages.stream over InvokeModelWithResponseStream: event-stream frames become the
    Anthropic events, tool input deltas and usage included."""
    async with claude.messages.stream(model="claude", max_tokens=200, tools=[WEATHER], messages=HI) as stream:
        final = await stream.get_final_message()
    call = next(b for b in final.content if b.type == "tool_use")
    assert (call.input, final.stop_reason) == (TOOL_INPUT, "tool_use")
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (11, 3)
    assert bedrock_upstream.requests[0]["path"].endswith("/invoke-with-response-stream")
    assert "stream" not in bedrock_upstream.requests[0]["body"]


async def test_openai_chat_stream_to_bedrock(gateway: VmxProcess) -> None:
    """The OpenAI SDK's streamed chat reaches Claude on Bedrock converted, and back."""
    client = openai.AsyncOpenAI(base_url=gateway.base_url(), api_key=KEY, max_retries=0)
    stream = await client.chat.completions.create(model="claude", messages=HI, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    await client.close()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hi"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 16


async def test_exception_frame_mid_stream_is_an_in_band_error(claude: Any) -> None:
    """A throttlingException frame after content started ends the stream with an Anthropic
    error event the SDK raises on, carrying Bedrock's message."""
    with pytest.raises(anthropic.APIStatusError, match="Too many requests"):
        async with claude.messages.stream(model="throttled", max_tokens=50, messages=HI) as stream:
            async for _ in stream:
                pass


async def test_wrong_secret_is_refused_by_the_signature_check(upstream: FakeOpenAI, bedrock_upstream: FakeBedrock, vmx_factory: Any) -> None:
    """Signed with the wrong secret, Bedrock's 403 makes the leg fail (502), and the secret
    never appears in the answer or the log."""
    wrong = "wrong/SECRET/0123456789abcdefghijklmnopqrstu"
    proc: VmxProcess = await vmx_factory(bedrock_config(upstream, bedrock_upstream), env={**AWS_ENV, "AWS_SECRET_ACCESS_KEY": wrong})
    client = anthropic.AsyncAnthropic(base_url=proc.base_url() + "/anthropic", api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        await client.messages.create(model="claude", max_tokens=50, messages=HI)
    await client.close()
    assert info.value.status_code == 502
    assert "signature" in json.dumps(info.value.body)
    assert wrong not in json.dumps(info.value.body) and wrong not in proc.output()


async def test_converse_stream_tool_use_with_the_anthropic_sdk(claude: Any, bedrock_upstream: FakeBedrock) -> None:
    """messages.stream on a Converse model: the request becomes Converse (toolConfig,
    inferenceConfig), the ConverseStream events become Anthropic events with the tool input."""
    async with claude.messages.stream(model="nova", max_tokens=200, tools=[WEATHER], messages=HI) as stream:
        final = await stream.get_final_message()
    call = next(b for b in final.content if b.type == "tool_use")
    assert (call.name, call.input, final.stop_reason) == ("get_weather", TOOL_INPUT, "tool_use")
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (11, 3, 2)
    sent = bedrock_upstream.requests[0]
    assert sent["path"] == "/model/amazon.nova-pro-v1%3A0/converse-stream"
    assert sent["body"]["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert sent["body"]["inferenceConfig"] == {"maxTokens": 200}
    assert sent["body"]["messages"] == [{"role": "user", "content": [{"text": "hi"}]}]


async def test_converse_chat_with_reasoning_and_the_openai_sdk(gateway: VmxProcess, bedrock_upstream: FakeBedrock) -> None:
    """OpenAI chat on a Converse model: reasoning_effort becomes Claude's thinking budget, and
    the signed reasoning comes back in reasoning_content / thinking_blocks; the answer is a
    valid Chat completion."""
    client = openai.AsyncOpenAI(base_url=gateway.base_url(), api_key=KEY, max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="nova", messages=[{"role": "system", "content": "be brief"}, *HI], reasoning_effort="low", max_completion_tokens=4000)
    await client.close()
    body = json.loads(raw.text)
    spec.validate(body, "CreateChatCompletionResponse")
    message = body["choices"][0]["message"]
    assert message["content"] == "echo: hi"
    assert message["thinking_blocks"][0]["signature"] == SIGNATURE
    assert body["usage"]["prompt_tokens"] == 16
    sent = bedrock_upstream.requests[0]["body"]
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert sent["system"] == [{"text": "be brief"}]


async def test_converse_responses_stream(gateway: VmxProcess) -> None:
    """A streamed Responses call on a Converse model: every event valid per the spec."""
    client = openai.AsyncOpenAI(base_url=gateway.base_url(), api_key=KEY, max_retries=0)
    stream = await client.responses.create(model="nova", input="hi", stream=True)
    events = [ev.to_dict(mode="json") async for ev in stream]
    await client.close()
    for ev in events:
        spec.validate_response_event(ev)
    text = "".join(ev["delta"] for ev in events if ev["type"] == "response.output_text.delta")
    assert text.strip() == "echo: hi"
    assert events[-1]["type"] == "response.completed"


async def test_converse_refuses_an_image_url(claude: Any, bedrock_upstream: FakeBedrock) -> None:
    """Converse takes image bytes only: an image by URL is a 400 naming it, nothing is sent."""
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    with pytest.raises(anthropic.BadRequestError, match="image by URL"):
        await claude.messages.create(model="nova", max_tokens=50, messages=[{"role": "user", "content": [image]}])
    assert bedrock_upstream.requests == []


# CountTokens -------------------------------------------------------------------------------

SYSTEM = "be brief"


def counted_input(sent: dict[str, Any]) -> dict[str, Any]:
    """What a CountTokens request asked to count: the Converse members, or the decoded
    InvokeModel body."""
    given = sent["body"]["input"]
    if "invokeModel" in given:
        decoded: dict[str, Any] = json.loads(base64.b64decode(given["invokeModel"]["body"]))
        return decoded
    converse: dict[str, Any] = given["converse"]
    return converse


async def test_count_tokens_on_invoke_model_is_bedrocks_own(claude: Any, bedrock_upstream: FakeBedrock) -> None:
    """messages.count_tokens on a bedrock-invoke resource asks CountTokens with the InvokeModel
    body (base64, Bedrock's anthropic_version, no model) and answers Bedrock's number."""
    raw = await claude.messages.with_raw_response.count_tokens(model="claude", system=SYSTEM, messages=HI, tools=[WEATHER])
    sent = bedrock_upstream.requests[-1]
    assert sent["path"] == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens"
    body = counted_input(sent)
    assert body == {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1, "system": SYSTEM, "messages": HI, "tools": [WEATHER]}
    assert (await raw.parse()).input_tokens == token_count(body)
    assert raw.headers["x-vmx-token-count"] == "provider"


async def test_count_tokens_on_converse_sends_the_converted_request(claude: Any, bedrock_upstream: FakeBedrock) -> None:
    """On a bedrock (Converse) resource the Anthropic body is converted to Converse as a
    completion would be, and only the members CountTokens takes are sent."""
    raw = await claude.messages.with_raw_response.count_tokens(
        model="claude-converse", system=SYSTEM, messages=HI, tools=[WEATHER],
        thinking={"type": "enabled", "budget_tokens": 1024})
    counted = counted_input(bedrock_upstream.requests[-1])
    assert counted == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "system": [{"text": SYSTEM}],
        "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": WEATHER["input_schema"]}}}]},
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
    }
    assert (await raw.parse()).input_tokens == token_count(counted)
    assert raw.headers["x-vmx-token-count"] == "provider"


@pytest.mark.parametrize("resource", ["nova", "claude-profile"])
async def test_count_tokens_falls_back_to_the_estimate_when_bedrock_cannot_count(
    claude: Any, bedrock_upstream: FakeBedrock, resource: str
) -> None:
    """A model Bedrock cannot count for (its 400 ValidationException) gets the gateway's
    estimate, marked as such, on either provider; the next count does not ask Bedrock again."""
    raw = await claude.messages.with_raw_response.count_tokens(model=resource, messages=HI)
    assert bedrock_upstream.requests[-1]["path"].endswith("/count-tokens")
    assert raw.headers["x-vmx-token-count"] == "estimate"
    assert (await raw.parse()).input_tokens > 0
    asked = len(bedrock_upstream.requests)
    again = await claude.messages.with_raw_response.count_tokens(model=resource, messages=HI)
    assert again.headers["x-vmx-token-count"] == "estimate"
    assert (await again.parse()).input_tokens == (await raw.parse()).input_tokens
    assert len(bedrock_upstream.requests) == asked


async def test_count_tokens_estimates_what_converse_cannot_carry(claude: Any, bedrock_upstream: FakeBedrock) -> None:
    """An image by URL cannot become Converse: the count is the estimate and nothing is sent."""
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    raw = await claude.messages.with_raw_response.count_tokens(
        model="claude-converse", messages=[{"role": "user", "content": [image, {"type": "text", "text": "what is it?"}]}])
    assert raw.headers["x-vmx-token-count"] == "estimate"
    assert bedrock_upstream.requests == []


async def test_count_tokens_passes_on_bedrocks_refusal_of_the_body(claude: Any, bedrock_upstream: FakeBedrock) -> None:
    """A body Bedrock refuses as malformed (not a model it cannot count) is the client's 400."""
    with pytest.raises(anthropic.BadRequestError, match="Malformed input request"):
        await claude.messages.count_tokens(model="claude", messages=HI, extra_body={"anthropic_version": "bedrock-2099-01-01"})
    assert bedrock_upstream.requests[-1]["path"].endswith("/count-tokens")
