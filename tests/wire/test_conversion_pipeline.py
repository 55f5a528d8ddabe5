"""Conversion inside the pipeline, in process: an Anthropic client on a Chat-only provider, the
stage timing, usage capture, and the 400s a converter raises for what it cannot carry."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from vmx_core import ClientRequest, Format, hookimpl
from vmx_core.audit.record import AuditRecord
from vmx_core.errors import InvalidRequest, UpstreamProtocolError
from vmx_core.reply import Completion, StreamingCompletion
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway
from vmx_core.wire import canonical as c
from vmx_core.wire import responses
from vmx_core.wire.convert import StreamConverter, convert_request, convert_response
from vmx_core.wire.sse import SSEParser


class Records:
    """An audit sink plugin that keeps every record."""

    name = "records"

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    @hookimpl
    def vmx_register_audit_sinks(self, config: Any) -> list[Records]:
        return [self]

    def enqueue(self, record: AuditRecord) -> None:
        self.records.append(record)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


BODY = {"model": "chat", "max_tokens": 100, "system": "be brief", "messages": [{"role": "user", "content": "hi"}]}


async def test_anthropic_client_on_chat_provider_whole() -> None:
    """A whole Anthropic request reaches a Chat-only provider as Chat and comes back as an
    Anthropic message; the audit record has the usage and a ``conversion`` stage."""
    provider, sink = FakeProvider(), Records()
    async with make_test_gateway(provider, plugins=[sink]) as gw:
        reply = await gw.handle(ClientRequest(Format.ANTHROPIC, "test", "test", orjson.dumps(BODY), TEST_KEY))
    assert isinstance(reply, Completion)
    answer = reply.json()
    assert answer["type"] == "message" and answer["content"][0]["type"] == "text"
    assert answer["stop_reason"] == "end_turn"
    call = provider.calls[0]
    assert call.format is Format.CHAT_COMPLETIONS
    assert call.body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    record = sink.records[0]
    assert "conversion" in record.stages
    assert record.prompt_tokens == answer["usage"]["input_tokens"]


async def test_anthropic_client_on_chat_provider_stream() -> None:
    """A streamed Anthropic request on a Chat-only provider is an Anthropic event stream from
    message_start to message_stop, with the text deltas and usage captured."""
    provider, sink = FakeProvider(), Records()
    body = {**BODY, "stream": True}
    async with make_test_gateway(provider, plugins=[sink]) as gw:
        reply = await gw.handle(ClientRequest(Format.ANTHROPIC, "test", "test", orjson.dumps(body), TEST_KEY))
        assert isinstance(reply, StreamingCompletion)
        raw = b"".join([frame async for frame in reply])
    kinds = [ev.event for ev in SSEParser().feed(raw)]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_delta" in kinds
    assert provider.calls[0].body["stream_options"] == {"include_usage": True}
    assert sink.records[0].status_code == 200 and sink.records[0].completion_tokens is not None


async def test_unconvertible_request_is_a_400_and_nothing_is_sent() -> None:
    """A feature the provider's shape cannot hold ends the request with a 400 naming it, and
    the leg is recorded as unsupported_feature."""
    provider, sink = FakeProvider(), Records()
    body = {**BODY, "top_k": 5}
    async with make_test_gateway(provider, plugins=[sink]) as gw:
        with pytest.raises(InvalidRequest, match="top_k"):
            await gw.handle(ClientRequest(Format.ANTHROPIC, "test", "test", orjson.dumps(body), TEST_KEY))
    assert provider.calls == []
    assert sink.records[0].attempts[0].reason == "unsupported_feature"


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("src", "body", "dst", "field"),
    [
        (Format.CHAT_COMPLETIONS, {**CHAT, "stop": ["x"]}, Format.RESPONSES, "stop"),
        (Format.CHAT_COMPLETIONS, {**CHAT, "response_format": {"type": "json_object"}}, Format.ANTHROPIC, "response_format.type=json_object"),
        (Format.CHAT_COMPLETIONS, {**CHAT, "temperature": 1.5}, Format.ANTHROPIC, "temperature"),
        (Format.CHAT_COMPLETIONS, {**CHAT, "n": 2}, Format.ANTHROPIC, "n"),
        (Format.CHAT_COMPLETIONS, {**CHAT, "logit_bias": {"1": 2}}, Format.ANTHROPIC, "logit_bias"),
        (Format.CHAT_COMPLETIONS, {**CHAT, "max_completion_tokens": 500, "reasoning_effort": "high"}, Format.ANTHROPIC, "reasoning_effort"),
        (Format.RESPONSES, {"model": "m", "input": "hi", "previous_response_id": "resp_1"}, Format.CHAT_COMPLETIONS, "previous_response_id"),
        (Format.RESPONSES, {"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, Format.ANTHROPIC, "input[0].type=item_reference"),
        (Format.ANTHROPIC, {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
         Format.CHAT_COMPLETIONS, "messages[0].content[0].type=document"),
        (Format.ANTHROPIC, {"model": "m", "max_tokens": 5, "messages": [], "tools": [{"type": "web_search_20250305", "name": "w"}]},
         Format.RESPONSES, "tools[0].type=web_search_20250305"),
        (Format.ANTHROPIC, {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]}]},
         Format.CHAT_COMPLETIONS, "messages[0]"),
    ],
)
def test_unconvertible_features_name_their_field(src: Format, body: dict[str, Any], dst: Format, field: str) -> None:
    """Each feature the target shape cannot hold is a 400 whose message starts with its path."""
    with pytest.raises(InvalidRequest) as info:
        convert_request(src, dst, body)
    assert info.value.message.startswith(field), info.value.message
    assert info.value.status == 400


def test_harmless_fields_are_accepted() -> None:
    """Storage and cache hints (store, metadata, cache_control, a false logprobs) do not block
    a conversion."""
    chat = convert_request(Format.ANTHROPIC, Format.CHAT_COMPLETIONS, {
        "model": "m", "max_tokens": 5, "cache_control": {"type": "ephemeral"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]})
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    anthropic = convert_request(Format.CHAT_COMPLETIONS, Format.ANTHROPIC, {**CHAT, "store": True, "metadata": {"a": "b"}, "logprobs": False})
    assert anthropic["messages"] == [{"role": "user", "content": "hi"}]


def test_upstream_error_mid_stream_becomes_the_clients_in_band_error() -> None:
    """An Anthropic ``error`` event mid-stream reaches a Chat client as ``data: {"error"}`` and
    a Responses client as an ``error`` event, with the upstream's message."""
    raw = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":1}}}\n\n'
           b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    for dst, check in (
        (Format.CHAT_COMPLETIONS, lambda ev: orjson.loads(ev.data)["error"]["message"] == "Overloaded"),
        (Format.RESPONSES, lambda ev: ev.event == "error" and orjson.loads(ev.data)["message"] == "Overloaded"),
    ):
        conv = StreamConverter(Format.ANTHROPIC, dst)
        out = [o for ev in SSEParser().feed(raw) for o in conv.feed(ev)]
        assert check(out[-1]), out[-1]


def test_stop_reasons_map_across_dialects() -> None:
    """max_tokens, stop_sequence and refusal survive a whole-answer conversion."""
    for reason, chat_finish in (("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter")):
        body = {"id": "m", "model": "c", "content": [{"type": "text", "text": "x"}], "stop_reason": reason,
                "stop_sequence": "END" if reason == "stop_sequence" else None, "usage": {"input_tokens": 1, "output_tokens": 1}}
        chat = orjson.loads(convert_response(Format.ANTHROPIC, Format.CHAT_COMPLETIONS, body))
        assert chat["choices"][0]["finish_reason"] == chat_finish
    back = c.Response("r", "m", (c.Text("x"),), "max_tokens")
    assert responses.emit_response(back)["incomplete_details"] == {"reason": "max_output_tokens"}


def test_broken_tool_json_from_a_model_is_a_protocol_error() -> None:
    """A Chat answer whose tool arguments are not JSON cannot become an Anthropic tool_use:
    it is an upstream protocol error (the leg fails over), not a crash."""
    body = {"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                               "function": {"name": "f", "arguments": "{broken"}}]}}]}
    with pytest.raises(UpstreamProtocolError, match="c1"):
        convert_response(Format.CHAT_COMPLETIONS, Format.ANTHROPIC, body)
