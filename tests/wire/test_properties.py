"""Hypothesis properties of the converters.

* canonical -> dialect -> canonical keeps the meaning of generated conversations with tools,
  tool results, images and Claude's signed and redacted thinking (up to what a dialect
  provably cannot hold, projected explicitly);
* any chunking of an upstream stream converts to the same final message, and that message
  has the upstream's text, tool calls, thinking (with its signatures) and stop reason;
* generated answers with signed and redacted thinking, streamed in Anthropic's or Chat's shape
  and cut anywhere, convert into streams that fold back into the same blocks; a Chat client
  folding such a stream gets the whole answer's ``thinking_blocks`` and, sending them back,
  reaches Anthropic with the signed blocks.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
from attrs import evolve
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.chat_clients import litellm_thinking_blocks, openai_sdk_message, without_index
from vmx_core.wire import anthropic, chat
from vmx_core.wire import canonical as c
from vmx_core.wire.chat_stream import ChatStreamEmitter
from vmx_core.wire.convert import EMIT_REQUEST, EMITTERS, PARSE_REQUEST, PARSERS, StreamConverter
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEParser
from vmx_core.wire.usage import Usage

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
# Claude's thinking: signed, or redacted to opaque data (it never comes unsigned).
opaque = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=4, max_size=40)
thinking = st.one_of(st.builds(c.Thinking, text, opaque), opaque.map(lambda data: c.Thinking("", redacted=data)))
# Chat keeps one text per assistant turn, before its tool calls; thinking comes first.
assistant_parts = st.tuples(
    st.lists(thinking, max_size=2), st.one_of(st.none(), st.builds(c.Text, text)), st.lists(tool_calls, max_size=3)
).filter(lambda t: t[1] is not None or bool(t[2])).map(lambda t: (*t[0], *((t[1],) if t[1] else ()), *t[2]))
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
    if fmt is not Format.ANTHROPIC:
        # OpenAI takes back only its own reasoning: Claude's is not sent (docs/providers.md).
        messages = tuple(evolve(m, parts=tuple(p for p in m.parts if not isinstance(p, c.Thinking))) for m in messages)
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
    """canonical -> dialect -> canonical preserves conversations with tools, images and (in
    Anthropic's shape) signed and redacted thinking."""
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


#: The golden upstream streams and the shape each is in.
STREAMS: dict[str, str] = {"anthropic.sse": Format.ANTHROPIC, "chat.sse": Format.CHAT_COMPLETIONS,
                           "chat-thinking.sse": Format.CHAT_COMPLETIONS, "responses.sse": Format.RESPONSES,
                           "converse.sse": "bedrock-converse"}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(STREAMS)), st.sampled_from(list(Format)), st.lists(st.integers(0, 10_000), max_size=25))
def test_any_chunking_gives_the_same_message(name: str, dst: Format, cuts: list[int]) -> None:
    """However the upstream's bytes are chunked, the converted stream folds into the same final
    message, with the upstream's text, tool calls (ids, names, arguments), thinking (signed and
    redacted blocks intact where the client's shape streams them) and stop reason."""
    src, raw = STREAMS[name], (GOLDEN_IN / name).read_bytes()
    cuts = [x % (len(raw) + 1) for x in cuts]
    # Converse answers carry no id: the gateway makes a random one per stream.
    whole = evolve(_final(src, dst, raw, []), id="")
    assert evolve(_final(src, dst, raw, cuts), id="") == whole
    original = _upstream(src, raw)
    assert [p for p in whole.parts if isinstance(p, c.Text | c.ToolCall)] == [
        p for p in original.parts if isinstance(p, c.Text | c.ToolCall)
    ]
    thought, upstream_thought = ([p for p in r.parts if isinstance(p, c.Thinking)] for r in (whole, original))
    assert thought == upstream_thought
    assert whole.stop_reason == original.stop_reason
    assert whole.usage.completion_tokens == original.usage.completion_tokens


def _pieces(value: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(value), *(x % (len(value) + 1) for x in cuts)})
    return [value[a:b] for a, b in itertools.pairwise(bounds)]


def _answer(blocks: list[tuple[c.Text | c.ToolCall | c.Thinking, list[int]]]) -> tuple[c.Response, list[c.Event]]:
    """A whole answer of ``blocks`` and the canonical stream of it, each delta cut at its
    block's cuts."""
    stop: c.StopReason = "tool_use" if any(isinstance(p, c.ToolCall) for p, _ in blocks) else "end"
    events: list[c.Event] = [c.Start("msg_gen", "claude-gen")]
    for i, (part, cuts) in enumerate(blocks):
        if isinstance(part, c.Text):
            events += [c.BlockStart(i, c.Text("")), *(c.Delta(i, "text", x) for x in _pieces(part.text, cuts))]
        elif isinstance(part, c.ToolCall):
            events.append(c.BlockStart(i, evolve(part, arguments="")))
            events += [c.Delta(i, "arguments", x) for x in _pieces(part.arguments, cuts)]
        elif part.redacted is not None:
            events.append(c.BlockStart(i, part))
        else:
            events += [c.BlockStart(i, c.Thinking("")), *(c.Delta(i, "thinking", x) for x in _pieces(part.text, cuts))]
            events.append(c.Delta(i, "signature", part.signature or ""))
        events.append(c.BlockStop(i))
    events += [c.Finish(stop), c.UsageEvent(Usage(prompt_tokens=10, completion_tokens=5)), c.End()]
    return c.Response("msg_gen", "claude-gen", tuple(p for p, _ in blocks), stop), events


def _no_adjacent_texts(blocks: list[tuple[c.Text | c.ToolCall | c.Thinking, list[int]]]) -> bool:
    # Chat has no block boundaries: two texts in a row are one text there.
    return not any(isinstance(a, c.Text) and isinstance(b, c.Text) for (a, _), (b, _) in itertools.pairwise(blocks))


answers = st.lists(
    st.tuples(st.one_of(thinking, st.builds(c.Text, text), tool_calls), st.lists(st.integers(0, 60), max_size=3)),
    min_size=1,
    max_size=5,
).filter(_no_adjacent_texts).map(_answer)
CLAUDE_SHAPES = [Format.ANTHROPIC, Format.CHAT_COMPLETIONS, Format.RESPONSES]


@settings(max_examples=100, deadline=None)
@given(answers, st.sampled_from(CLAUDE_SHAPES), st.sampled_from(CLAUDE_SHAPES), st.lists(st.integers(0, 100_000), max_size=25))
def test_thinking_survives_any_chunking_and_conversion(
    answer: tuple[c.Response, list[c.Event]], src: Format, dst: Format, cuts: list[int]
) -> None:
    """An answer with signed and redacted thinking, streamed by an upstream in Anthropic's,
    Chat's or Responses' shape and cut anywhere, converts into a stream that folds back into the same
    blocks: thinking text joined, signatures and redacted data intact, in order."""
    resp, events = answer
    emitter = EMITTERS[src](None)
    raw = b"".join(out.raw for ev in events for out in emitter.emit(ev))
    cuts = [x % (len(raw) + 1) for x in cuts]
    final = _final(src, dst, raw, cuts)
    assert final.parts == resp.parts
    assert final.stop_reason == resp.stop_reason


@settings(max_examples=60, deadline=None)
@given(answers)
def test_chat_client_folds_the_whole_answers_thinking_and_replays_it_signed(answer: tuple[c.Response, list[c.Event]]) -> None:
    """A Chat client folding a streamed answer (the openai SDK's way or LiteLLM's) gets the
    whole answer's reasoning_content and thinking_blocks; sent back on the next turn, the
    message reaches Anthropic with the signed and redacted blocks the model produced."""
    resp, events = answer
    emitter = ChatStreamEmitter()
    chunks = [orjson.loads(out.data) for ev in events for out in emitter.emit(ev) if not out.is_done]
    whole = chat.emit_response(resp)["choices"][0]["message"]
    message = openai_sdk_message(chunks)
    assert without_index(message.get("thinking_blocks") or []) == whole.get("thinking_blocks", [])
    assert litellm_thinking_blocks(chunks) == whole.get("thinking_blocks", [])
    assert (message.get("reasoning_content") or "") == whole.get("reasoning_content", "")
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}, message]}
    sent = anthropic.emit_request(chat.parse_request(body))["messages"][1]["content"]
    blocks = sent if isinstance(sent, list) else [{"type": "text", "text": sent}]  # a lone text goes as a string
    thought = [anthropic.emit_part(p) for p in resp.parts if isinstance(p, c.Thinking)]
    assert [b for b in blocks if b["type"] in ("thinking", "redacted_thinking")] == thought
