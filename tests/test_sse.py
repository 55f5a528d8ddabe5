"""Server-sent events: the incremental parser and the per-dialect stream watcher."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.errors import UpstreamProtocolError
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEEvent, SSEParser, encode
from vmx_core.wire.streams import StreamWatcher
from vmx_core.wire.usage import Usage

SETTINGS = settings(max_examples=200, deadline=None)

line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20)
# An event as (name or None, data lines, noise lines that the parser must ignore).
noise = st.sampled_from([b": keep-alive", b":", b"id: 7", b"retry: 1000", b": comment: with colon"])
events = st.tuples(
    st.none() | line_text.filter(bool),
    st.lists(line_text, min_size=1, max_size=4),
    st.lists(noise, max_size=2),
)
newlines = st.sampled_from([b"\n", b"\r\n", b"\r"])


def _encode(name: str | None, data: list[str], extra: list[bytes], nl: bytes) -> bytes:
    lines = list(extra)
    if name is not None:
        lines.append(b"event: " + name.encode())
    lines += [b"data: " + d.encode() for d in data]
    return b"".join(line + nl for line in lines) + nl


def _chunks(payload: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(payload), *(c % (len(payload) + 1) for c in cuts)})
    return [payload[a:b] for a, b in itertools.pairwise(points)]


def _feed(chunks: list[bytes]) -> tuple[list[SSEEvent], SSEParser]:
    parser = SSEParser()
    out: list[SSEEvent] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out, parser


@SETTINGS
@given(st.lists(st.tuples(events, newlines), max_size=6), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_chunking_yields_the_same_events(evs: list[Any], cuts: list[int]) -> None:
    """Whatever the chunking (even inside `\\r\\n`), the parser yields exactly the encoded events."""
    payload = b"".join(_encode(*ev, nl) for ev, nl in evs)
    got, parser = _feed(_chunks(payload, cuts))
    assert [(e.event, e.data) for e in got] == [(name, "\n".join(data)) for (name, data, _), _ in evs]
    assert parser.pending == b""
    # The raw bytes are what the upstream sent, so a passthrough relay re-sends them verbatim.
    assert b"".join(e.raw for e in got) == payload


def _encode_mixed(name: str | None, data: list[str], extra: list[bytes], nls: list[bytes]) -> bytes:
    lines = [*extra, *([b"event: " + name.encode()] if name is not None else []), *(b"data: " + d.encode() for d in data)]
    ends = [nls[i % len(nls)] for i in range(len(lines) + 1)]
    if ends[-2] == b"\r" and ends[-1] == b"\n":
        ends[-1] = b"\r\n"  # "\r" then "\n" would read as one CRLF, not a blank line
    return b"".join(line + end for line, end in zip([*lines, b""], ends, strict=True))


@SETTINGS
@given(st.lists(st.tuples(events, st.lists(newlines, min_size=1, max_size=4)), max_size=5), st.lists(st.integers(0, 10_000), max_size=8))
def test_mixed_line_endings_within_an_event(evs: list[Any], cuts: list[int]) -> None:
    """Each line may end in CRLF, LF or CR (WHATWG), e.g. `data: a\\n\\r\\n`; events still come out whole."""
    payload = b"".join(_encode_mixed(*ev, nls) for ev, nls in evs)
    # A final event: a lone CR at the very end of the input might be half a CRLF, so the parser
    # waits for one more byte before it ends the event.  (After `\r\r` it doesn't wait, and a
    # following `\n` becomes a harmless blank line at the start of the next event's bytes.)
    got, parser = _feed(_chunks(payload + b"data: end\n\n", cuts))
    expected = [(name, "\n".join(data)) for (name, data, _), _ in evs]
    assert [(e.event, e.data) for e in got] == [*expected, (None, "end")]
    assert b"".join(e.raw for e in got) == payload + b"data: end\n\n"
    assert parser.pending == b""


def test_lone_cr_after_lf_waits_for_the_next_byte() -> None:
    """`data: a\\n\\r` may be the start of `\\r\\n`: nothing is yielded until the next byte decides."""
    parser = SSEParser()
    assert parser.feed(b"data: a\r\n\r") == []
    (ev,) = parser.feed(b"\n")
    assert (ev.data, ev.raw) == ("a", b"data: a\r\n\r\n")
    assert parser.feed(b"data: b\n\r") == []
    b, c = parser.feed(b"data: c\n\n")
    assert (b.data, b.raw, c.data) == ("b", b"data: b\n\r", "c")


@SETTINGS
@given(st.lists(events, min_size=1, max_size=4), newlines)
def test_byte_at_a_time_equals_one_chunk(evs: list[Any], nl: bytes) -> None:
    """Feeding one byte at a time gives the same events as feeding everything at once."""
    payload = b"".join(_encode(*ev, nl) for ev in evs)
    whole, _ = _feed([payload])
    single, _ = _feed([payload[i : i + 1] for i in range(len(payload))])
    assert single == whole
    assert len(whole) == len(evs)


@SETTINGS
@given(st.lists(events, max_size=3), events, newlines, st.integers(0, 10_000))
def test_unterminated_event_stays_pending(done: list[Any], last: Any, nl: bytes, cut: int) -> None:
    """An event whose blank line never came is not yielded; its bytes are in `pending`."""
    head = b"".join(_encode(*ev, nl) for ev in done)
    tail = _encode(*last, nl)[: -len(nl)]  # the final blank line is missing
    got, parser = _feed(_chunks(head + tail, [cut]))
    assert len(got) == len(done)
    assert parser.pending == tail


@SETTINGS
@given(st.lists(line_text, min_size=1, max_size=5))
def test_multi_line_data_is_joined_with_newlines(lines: list[str]) -> None:
    """Several `data:` lines make one event whose data is the lines joined by `\\n`."""
    (ev,) = SSEParser().feed(b"".join(b"data: " + x.encode() + b"\n" for x in lines) + b"\n")
    assert ev.data == "\n".join(lines)
    assert ev.event is None


def test_comments_and_blank_lines_are_ignored() -> None:
    """Comment-only blocks and extra blank lines yield no events and don't disturb the next."""
    parser = SSEParser()
    got = parser.feed(b": ping\n\n\n\n: another\n\nevent: a\n: inline comment\ndata: 1\n\n")
    assert [(e.event, e.data) for e in got] == [("a", "1")]


def test_field_without_space_or_value() -> None:
    """`data:x` has no space to strip; `data` alone is an empty line of data; one space only is stripped."""
    got = SSEParser().feed(b"data:x\ndata\ndata:  two\n\n")
    assert got[0].data == "x\n\n two"


def test_done_sentinel_and_encoder() -> None:
    """`encode` writes a frame the parser reads back, and `[DONE]` is recognised."""
    frame = encode('{"a": 1}', event="delta") + encode("[DONE]")
    a, done = SSEParser().feed(frame)
    assert (a.event, a.data, a.is_done) == ("delta", '{"a": 1}', False)
    assert done.is_done and done.event is None


# ------------------------------------------------------------------------------------------
# StreamWatcher


def _ev(data: Any, event: str | None = None) -> SSEEvent:
    text = data if isinstance(data, str) else orjson.dumps(data).decode()
    return SSEEvent(event=event, data=text, raw=encode(text, event))


counts = st.integers(0, 10**6)
CHAT_CONTENT = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}]}


@SETTINGS
@given(counts, counts, counts, counts, st.booleans())
def test_chat_usage_chunk_is_captured_and_stripped_only_when_asked(
    prompt: int, completion: int, cached: int, reasoning: int, strip: bool
) -> None:
    """The usage-only chunk is recorded, and withheld from the client only with strip_usage_chunk."""
    w = StreamWatcher(Format.CHAT_COMPLETIONS, strip_usage_chunk=strip)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    assert w.observe(_ev(CHAT_CONTENT)) is True
    assert w.observe(_ev({"id": "c", "choices": [], "usage": usage})) is (not strip)
    assert w.usage == Usage(prompt, completion, cached_tokens=cached, reasoning_tokens=reasoning)
    assert not w.terminal
    assert w.observe(_ev("[DONE]")) is True
    assert w.terminal and w.failed is None and w.events == 3


def test_chat_chunk_with_choices_and_usage_is_always_forwarded() -> None:
    """A chunk carrying content and usage together is never stripped."""
    w = StreamWatcher(Format.CHAT_COMPLETIONS, strip_usage_chunk=True)
    assert w.observe(_ev({**CHAT_CONTENT, "usage": {"prompt_tokens": 3, "completion_tokens": 1}})) is True
    assert w.usage == Usage(prompt_tokens=3, completion_tokens=1)


def test_chat_thinking_blocks_alone_are_content() -> None:
    """A chunk whose only delta is a thinking block (Claude's redacted thinking comes so) is
    content: after it the stream can no longer fail over unseen."""
    w = StreamWatcher(Format.CHAT_COMPLETIONS)
    assert w.observe(_ev({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})) is True
    assert not w.content_started
    redacted = {"thinking_blocks": [{"index": 0, "type": "redacted_thinking", "data": "EmwKAhgB"}]}
    assert w.observe(_ev({"id": "c", "choices": [{"index": 0, "delta": redacted}]})) is True
    assert w.content_started


def test_chat_in_band_error_marks_failure() -> None:
    """`data: {"error": ...}` records the failure message and is forwarded; it is not terminal."""
    w = StreamWatcher(Format.CHAT_COMPLETIONS)
    assert w.observe(_ev({"error": {"message": "overloaded", "type": "server_error"}})) is True
    assert w.failed == "overloaded" and not w.terminal


RESPONSES_NON_TERMINAL = ["response.created", "response.in_progress", "response.output_text.delta", "response.output_item.done"]
ANTHROPIC_NON_TERMINAL = ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "ping", "message_delta"]


@SETTINGS
@given(st.lists(st.sampled_from(RESPONSES_NON_TERMINAL), max_size=6), st.sampled_from(["response.completed", "response.incomplete"]), counts, counts, st.booleans())
def test_responses_terminal_and_usage(kinds: list[str], terminal: str, inp: int, out: int, named: bool) -> None:
    """Responses streams end at response.completed/incomplete, typed by `event:` or by data.type; usage comes from it."""
    w = StreamWatcher(Format.RESPONSES)
    for kind in kinds:
        w.observe(_ev({"type": kind, "response": {"status": "in_progress"}}, kind if named else None))
        assert not w.terminal
    usage = {"input_tokens": inp, "output_tokens": out, "input_tokens_details": {"cached_tokens": 1}}
    w.observe(_ev({"type": terminal, "response": {"usage": usage}}, terminal if named else None))
    assert w.terminal and w.failed is None
    assert w.usage == Usage(prompt_tokens=inp, completion_tokens=out, cached_tokens=1)


def test_responses_failure_events() -> None:
    """response.failed is terminal with its error message; an `error` event fails without ending."""
    w = StreamWatcher(Format.RESPONSES)
    w.observe(_ev({"type": "error", "message": "bad things"}, "error"))
    assert w.failed == "bad things" and not w.terminal
    w = StreamWatcher(Format.RESPONSES)
    w.observe(_ev({"type": "response.failed", "response": {"error": {"message": "quota"}}}, "response.failed"))
    assert w.failed == "quota" and w.terminal


@SETTINGS
@given(st.lists(st.sampled_from(ANTHROPIC_NON_TERMINAL), max_size=6), counts, counts, counts, counts)
def test_anthropic_terminal_and_usage(kinds: list[str], inp: int, read: int, write: int, out: int) -> None:
    """Anthropic streams end at message_stop; usage merges message_start's input with message_delta's output."""
    w = StreamWatcher(Format.ANTHROPIC)
    start = {"type": "message_start", "message": {"usage": {
        "input_tokens": inp, "cache_read_input_tokens": read, "cache_creation_input_tokens": write, "output_tokens": 1}}}
    w.observe(_ev(start, "message_start"))
    for kind in kinds:
        data: dict[str, Any] = {"type": kind}
        if kind == "message_start":
            data = start
        w.observe(_ev(data, kind))
        assert not w.terminal
    w.observe(_ev({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": out}}, "message_delta"))
    assert not w.terminal
    assert w.observe(_ev({"type": "message_stop"}, "message_stop")) is True
    assert w.terminal and w.failed is None
    assert w.usage == Usage(prompt_tokens=inp + read + write, completion_tokens=out, cached_tokens=read, cache_creation_tokens=write)


def test_anthropic_error_event_marks_failure() -> None:
    """`event: error` records the message and does not count as a clean end."""
    w = StreamWatcher(Format.ANTHROPIC)
    w.observe(_ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"))
    assert w.failed == "Overloaded" and not w.terminal


def test_non_json_data_is_an_upstream_protocol_error() -> None:
    """A frame that is not a JSON object is the upstream's failure, never forwarded as garbage."""
    for fmt in Format:
        for data in ('{"usage": oops', "[1, 2]", "plain text"):
            w = StreamWatcher(fmt)
            with pytest.raises(UpstreamProtocolError, match="malformed stream event"):
                w.observe(SSEEvent(event=None, data=data, raw=b""))
