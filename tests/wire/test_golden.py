"""Golden fixtures for every conversion direction: requests, whole answers and streams.

The inputs in ``golden/in/`` are what each dialect's upstream (or client) really sends: a
signed thinking block, text, a tool call whose arguments stream in pieces, parallel calls,
cache and reasoning usage.  The expected outputs are in ``golden/out/``; after a deliberate
change, rewrite them with ``VMX_REGEN_GOLDEN=1`` and review the diff.  Everything the
gateway emits in an OpenAI shape is also checked against OpenAI's official OpenAPI spec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e import spec
from vmx_core.wire.convert import StreamConverter, convert_request, convert_response
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEParser

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("VMX_REGEN_GOLDEN") == "1"
FORMATS = {"chat": Format.CHAT_COMPLETIONS, "anthropic": Format.ANTHROPIC, "responses": Format.RESPONSES}
DIRECTIONS = [(a, b) for a in FORMATS for b in FORMATS if a != b]
#: Wall-clock fields the converters stamp at run time.
_VOLATILE = {"created", "created_at"}


def _scrub(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _scrub(v) for k, v in node.items() if k not in _VOLATILE}
    if isinstance(node, list):
        return [_scrub(v) for v in node]
    return node


def _check(name: str, actual: Any) -> None:
    path = GOLDEN / "out" / name
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n")
    assert json.loads(path.read_text()) == actual, f"{name} differs from its golden file"


def convert_stream(src: str, dst: str, raw: bytes) -> list[dict[str, Any]]:
    conv = StreamConverter(FORMATS[src], FORMATS[dst], input_estimate=99)
    out: list[dict[str, Any]] = []
    for ev in SSEParser().feed(raw):
        for converted in conv.feed(ev):
            data = converted.data if converted.is_done else orjson.loads(converted.data)
            out.append({"event": converted.event, "data": data})
    return out


@pytest.mark.parametrize(("src", "dst"), DIRECTIONS)
def test_stream_golden(src: str, dst: str) -> None:
    """An upstream stream converts event by event into the golden stream of the client's shape."""
    events = convert_stream(src, dst, (GOLDEN / "in" / f"{src}.sse").read_bytes())
    for ev in events:
        if dst == "responses":
            spec.validate_response_event(ev["data"])
        elif dst == "chat" and ev["data"] != "[DONE]":
            spec.validate(ev["data"], "CreateChatCompletionStreamResponse")
    _check(f"stream.{src}-to-{dst}.json", _scrub(events))


@pytest.mark.parametrize(("src", "dst"), DIRECTIONS)
def test_response_golden(src: str, dst: str) -> None:
    """An upstream's whole answer converts into the golden answer of the client's shape."""
    body = json.loads((GOLDEN / "in" / f"{src}.json").read_text())
    converted = orjson.loads(convert_response(FORMATS[src], FORMATS[dst], body))
    if dst == "responses":
        spec.validate(converted, "Response")
    elif dst == "chat":
        spec.validate(converted, "CreateChatCompletionResponse")
    _check(f"response.{src}-to-{dst}.json", _scrub(converted))


@pytest.mark.parametrize(("src", "dst"), DIRECTIONS)
def test_request_golden(src: str, dst: str) -> None:
    """A client's request converts into the golden upstream body of the provider's shape."""
    body = json.loads((GOLDEN / "in" / f"request.{src}.json").read_text())
    converted = convert_request(FORMATS[src], FORMATS[dst], body)
    # Only Chat bodies are checked: the spec's CreateResponse makes every user message with a
    # content list match two ``oneOf`` branches (InputMessage and EasyInputMessage), so no
    # real body validates against it.
    if dst == "chat":
        spec.validate(converted, "CreateChatCompletionRequest")
    _check(f"request.{src}-to-{dst}.json", converted)
