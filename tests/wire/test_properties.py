"""Hypothesis properties of the converters.

* canonical -> dialect -> canonical keeps the meaning of generated conversations with tools,
  tool results and images (up to what a dialect provably cannot hold, projected explicitly);
* any chunking of an upstream stream converts to the same final message, and that message
  has the upstream's text, tool calls and stop reason.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
from attrs import evolve
from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.wire import canonical as c
from vmx_core.wire.convert import EMIT_REQUEST, PARSE_REQUEST, PARSERS, StreamConverter
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEParser

GOLDEN_IN = Path(__file__).parent / "golden" / "in"
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
ident = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
images = st.one_of(
    st.builds(c.Image, url=ident.map("https://example.com/{}".format)),
    st.builds(c.Image, media_type=st.sampled_from(["image/png", "image/jpeg"]), data=st.text("ABCDEFGH0123+/", min_size=4, max_size=16)),
)
arguments = st.dictionaries(ident, st.one_of(st.integers(-(2**53), 2**53), text, st.booleans()), max_size=3).map(lambda d: orjson.dumps(d).decode())
tool_calls = st.builds(c.ToolCall, id=ident.map("call_{}".format), name=ident, arguments=arguments)
tool_results = st.builds(c.ToolResult, call_id=ident.map("call_{}".format), content=st.tuples(st.builds(c.Text, text)))
user_parts = st.lists(st.one_of(st.builds(c.Text, text), images, tool_results), min_size=1, max_size=4)
# Chat keeps one text per assistant turn, before its tool calls.
assistant_parts = st.tuples(st.one_of(st.none(), st.builds(c.Text, text)), st.lists(tool_calls, max_size=3)).map(
    lambda t: ((t[0],) if t[0] else ()) + tuple(t[1])
).filter(bool)
turns = st.lists(
    st.one_of(
        user_parts.map(lambda p: c.Message("user", tuple(p))),
        assistant_parts.map(lambda p: c.Message("assistant", p)),
    ),
    min_size=1,
    max_size=6,
).map(c.normalise)
tools = st.lists(
    st.builds(
        c.Tool,
        name=ident,
        description=st.one_of(st.none(), text),
        parameters=st.just({"type": "object", "properties": {"x": {"type": "string"}}}),
        strict=st.booleans(),
    ),
    max_size=3,
)
choices = st.one_of(st.none(), st.sampled_from(["auto", "none", "required"]).map(c.ToolChoice), ident.map(lambda n: c.ToolChoice("tool", n)))
requests = st.builds(
    c.Request,
    model=ident,
    messages=turns,
    system=st.one_of(st.none(), text),
    tools=tools.map(tuple),
    tool_choice=choices,
    parallel_tool_calls=st.sampled_from([None, False]),
    max_tokens=st.integers(1, 100_000),
    temperature=st.one_of(st.none(), st.floats(0, 1)),
    top_p=st.one_of(st.none(), st.floats(0.01, 1)),
    user=st.one_of(st.none(), ident),
)


def meaning(req: c.Request, fmt: Format) -> c.Request:
    """What ``fmt`` can hold of ``req``: image ``detail`` is a hint Anthropic drops (and
    Responses always states), and Anthropic says "no parallel calls" inside ``tool_choice``."""
    messages = tuple(
        evolve(m, parts=tuple(evolve(p, detail=None) if isinstance(p, c.Image) else p for p in m.parts)) for m in req.messages
    )
    if fmt is Format.CHAT_COMPLETIONS:
        # A Chat assistant message holds one text and then its tool calls.
        messages = tuple(_chat_assistant(m) if m.role == "assistant" else m for m in messages)
    req = evolve(req, messages=messages, stream=False)
    if fmt is Format.ANTHROPIC and req.parallel_tool_calls is False and req.tool_choice is None:
        req = evolve(req, tool_choice=c.ToolChoice("auto"))
    return req


def _chat_assistant(m: c.Message) -> c.Message:
    texts = "".join(p.text for p in m.parts if isinstance(p, c.Text))
    calls = tuple(p for p in m.parts if isinstance(p, c.ToolCall))
    return c.Message("assistant", ((c.Text(texts),) if texts else ()) + calls)


@settings(max_examples=150, deadline=None)
@given(requests, st.sampled_from(list(Format)))
def test_canonical_round_trip(req: c.Request, fmt: Format) -> None:
    """canonical -> dialect -> canonical preserves conversations with tools and images."""
    back = PARSE_REQUEST[fmt](EMIT_REQUEST[fmt](req))
    assert meaning(back, fmt) == meaning(req, fmt)


def _final(src: str, dst: Format, raw: bytes, cuts: list[int]) -> c.Response:
    """Feed ``raw`` cut at ``cuts``, convert to ``dst``, and fold ``dst``'s stream back."""
    conv = StreamConverter(src, dst, 10)
    parser, back, acc = SSEParser(), PARSERS[dst](), c.Accumulator()
    bounds = [0, *sorted(cuts), len(raw)]
    for a, b in itertools.pairwise(bounds):
        for ev in parser.feed(raw[a:b]):
            for converted in conv.feed(ev):
                for canonical_event in back.feed(converted):
                    acc.add(canonical_event)
    return acc.response()


def _upstream(src: str, raw: bytes) -> c.Response:
    parser, acc = PARSERS[src](), c.Accumulator()
    for ev in SSEParser().feed(raw):
        for canonical_event in parser.feed(ev):
            acc.add(canonical_event)
    return acc.response()


STREAMS: dict[str, str] = {Format.ANTHROPIC: "anthropic.sse", Format.CHAT_COMPLETIONS: "chat.sse", Format.RESPONSES: "responses.sse",
           "bedrock-converse": "converse.sse"}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(STREAMS)), st.sampled_from(list(Format)), st.lists(st.integers(0, 10_000), max_size=25))
def test_any_chunking_gives_the_same_message(src: str, dst: Format, cuts: list[int]) -> None:
    """However the upstream's bytes are chunked, the converted stream folds into the same final
    message, with the upstream's text, tool calls (ids, names, arguments) and stop reason."""
    raw = (GOLDEN_IN / STREAMS[src]).read_bytes()
    cuts = [x % (len(raw) + 1) for x in cuts]
    # Converse answers carry no id: the gateway makes a random one per stream.
    whole = evolve(_final(src, dst, raw, []), id="")
    assert evolve(_final(src, dst, raw, cuts), id="") == whole
    original = _upstream(src, raw)
    assert [p for p in whole.parts if isinstance(p, c.Text | c.ToolCall)] == [
        p for p in original.parts if isinstance(p, c.Text | c.ToolCall)
    ]
    assert whole.stop_reason == original.stop_reason
    assert whole.usage.completion_tokens == original.usage.completion_tokens
