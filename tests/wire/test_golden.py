"""Golden fixtures for every conversion direction: requests, whole answers and streams.

The inputs in ``golden/in/`` are what each dialect's upstream (or client) really sends: a
signed thinking block, a redacted one, text, a tool call whose arguments stream in pieces,
parallel calls, cache and reasoning usage; ``chat-thinking.sse`` is a Chat stream as LiteLLM
relays Claude's, signed and redacted thinking in ``thinking_blocks`` deltas.  The expected
outputs are in ``golden/out/``; after a deliberate change, rewrite them with
``VMX_REGEN_GOLDEN=1`` and review the diff.  Everything the gateway emits in an OpenAI shape
is also checked against OpenAI's official OpenAPI spec.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e import spec
from tests.wire.chat_clients import litellm_thinking_blocks, openai_sdk_message, without_index
from vmx_core.wire.convert import StreamConverter, convert_request, convert_response
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEParser

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("VMX_REGEN_GOLDEN") == "1"
FORMATS = {"chat": Format.CHAT_COMPLETIONS, "anthropic": Format.ANTHROPIC, "responses": Format.RESPONSES}
DIRECTIONS = [(a, b) for a in FORMATS for b in FORMATS if a != b]
#: Bedrock Converse is a provider-only dialect: requests go to it, answers come from it.
CONVERSE = "bedrock-converse"
ANSWERS = [*DIRECTIONS, *((CONVERSE, b) for b in FORMATS)]
REQUESTS = [*DIRECTIONS, *((a, CONVERSE) for a in FORMATS)]
#: A Chat upstream that carries Claude's signatures (LiteLLM's convention): streams only.
CHAT_THINKING = "chat-thinking"
STREAMS = [*ANSWERS, *((CHAT_THINKING, b) for b in FORMATS if b != "chat")]


def _shape(name: str) -> str:
    return Format.CHAT_COMPLETIONS if name == CHAT_THINKING else FORMATS.get(name, name)
#: Wall-clock fields the converters stamp at run time.
_VOLATILE = {"created", "created_at"}


#: Converse answers carry no id, so the gateway makes a random one.
_RANDOM_ID = re.compile(r"msg_bdrk_[0-9a-f]{20}")


def _scrub(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _scrub(v) for k, v in node.items() if k not in _VOLATILE}
    if isinstance(node, list):
        return [_scrub(v) for v in node]
    if isinstance(node, str):
        return _RANDOM_ID.sub("msg_bdrk_RANDOM", node)
    return node


def _check(name: str, actual: Any) -> None:
    path = GOLDEN / "out" / name
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n")
    assert json.loads(path.read_text()) == actual, f"{name} differs from its golden file"


def convert_stream(src: str, dst: str, raw: bytes) -> list[dict[str, Any]]:
    conv = StreamConverter(_shape(src), FORMATS[dst], input_estimate=99)
    out: list[dict[str, Any]] = []
    for ev in SSEParser().feed(raw):
        for converted in conv.feed(ev):
            data = converted.data if converted.is_done else orjson.loads(converted.data)
            out.append({"event": converted.event, "data": data})
    return out


def _input(src: str, ext: str) -> Path:
    return GOLDEN / "in" / f"{'converse' if src == CONVERSE else src}.{ext}"


@pytest.mark.parametrize(("src", "dst"), STREAMS)
def test_stream_golden(src: str, dst: str) -> None:
    """An upstream stream converts event by event into the golden stream of the client's shape."""
    events = convert_stream(src, dst, _input(src, "sse").read_bytes())
    for ev in events:
        if dst == "responses":
            spec.validate_response_event(ev["data"])
        elif dst == "chat" and ev["data"] != "[DONE]":
            spec.validate(ev["data"], "CreateChatCompletionStreamResponse")
    _check(f"stream.{src}-to-{dst}.json", _scrub(events))


@pytest.mark.parametrize("src", ["anthropic", CONVERSE])
def test_streamed_chat_thinking_blocks_match_the_whole_answer(src: str) -> None:
    """A Chat client folding Claude's streamed answer, with the openai SDK's stream state or
    LiteLLM's rule, gets the whole answer's reasoning_content and thinking_blocks: text joined,
    signature and redacted data intact."""
    chunks = [ev["data"] for ev in convert_stream(src, "chat", _input(src, "sse").read_bytes()) if ev["data"] != "[DONE]"]
    whole = orjson.loads(convert_response(_shape(src), Format.CHAT_COMPLETIONS, json.loads(_input(src, "json").read_text())))
    expected = whole["choices"][0]["message"]
    assert [b["type"] for b in expected["thinking_blocks"]] == ["thinking", "redacted_thinking"]
    streamed = openai_sdk_message(chunks)
    assert streamed["reasoning_content"] == expected["reasoning_content"]
    assert without_index(streamed["thinking_blocks"]) == expected["thinking_blocks"]
    assert litellm_thinking_blocks(chunks) == expected["thinking_blocks"]


@pytest.mark.parametrize(("src", "dst"), ANSWERS)
def test_response_golden(src: str, dst: str) -> None:
    """An upstream's whole answer converts into the golden answer of the client's shape."""
    body = json.loads(_input(src, "json").read_text())
    converted = orjson.loads(convert_response(_shape(src), FORMATS[dst], body))
    if dst == "responses":
        spec.validate(converted, "Response")
    elif dst == "chat":
        spec.validate(converted, "CreateChatCompletionResponse")
    _check(f"response.{src}-to-{dst}.json", _scrub(converted))


@pytest.mark.parametrize(("src", "dst"), REQUESTS)
def test_request_golden(src: str, dst: str) -> None:
    """A client's request converts into the golden upstream body of the provider's shape."""
    body = json.loads((GOLDEN / "in" / f"request.{src}.json").read_text())
    if dst == CONVERSE:
        # What Converse cannot hold (URL images, "no parallel calls", structured output) is
        # the 400 case (test_conversion_pipeline.py); the rest of the fixture converts.
        body = _without_url_images(body)
        body.pop("parallel_tool_calls", None)
        if isinstance(body.get("tool_choice"), dict):
            body["tool_choice"].pop("disable_parallel_tool_use", None)
        body.pop("text", None)
    converted = convert_request(FORMATS[src], _shape(dst), body)
    # Only Chat bodies are checked: the spec's CreateResponse makes every user message with a
    # content list match two ``oneOf`` branches (InputMessage and EasyInputMessage), so no
    # real body validates against it.
    if dst == "chat":
        spec.validate(converted, "CreateChatCompletionRequest")
    _check(f"request.{src}-to-{dst}.json", converted)


def _without_url_images(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_url_images(x) for x in node if not _is_url_image(x)]
    if isinstance(node, dict):
        return {k: _without_url_images(v) for k, v in node.items()}
    return node


def _is_url_image(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    url = (node.get("image_url") or {}).get("url") if node.get("type") == "image_url" else node.get("image_url")
    if node.get("type") == "image":
        url = (node.get("source") or {}).get("url")
    return isinstance(url, str) and url.startswith("https://")
