"""``mock``: a provider that answers locally, in all three API shapes.

It powers the quick start (no provider key needed) and demos of fallback and streaming
failures: ``latency_ms`` before the first byte, ``chunk_delay_ms`` between chunks,
``fail_rate`` with ``fail_status``, and ``fail_after_chunks`` to cut a stream mid-way.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from attrs import frozen

from vmx_core import hookimpl
from vmx_core.errors import UpstreamConnectionError, UpstreamHTTPError
from vmx_core.providers import ConnectionSpec, UpstreamCall, UpstreamReply
from vmx_core.tokens import count_text, estimate_request
from vmx_core.wire import sse
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEEvent


@frozen
class MockOptions:
    #: Fixed answer text; by default the mock echoes the last user message.
    reply: str | None = None
    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    #: Words per streamed chunk.
    words_per_chunk: int = 1
    fail_rate: float = 0.0
    fail_status: int = 500
    fail_message: str = "mock failure"
    #: Cut the stream (no final event) after this many content chunks.
    fail_after_chunks: int | None = None


@frozen
class MockProvider:
    name: str = "mock"
    formats: frozenset[Format] = frozenset(Format)
    stream_usage: bool = True
    options_type: type[Any] = MockOptions

    def connect(self, spec: ConnectionSpec) -> MockClient:
        return MockClient(spec.options)


class MockClient:
    def __init__(self, options: MockOptions) -> None:
        self.options = options
        self.calls = 0

    async def _start(self) -> None:
        self.calls += 1
        o = self.options
        if o.latency_ms > 0:
            await asyncio.sleep(o.latency_ms / 1000)
        if o.fail_rate > 0 and random.random() < o.fail_rate:
            if o.fail_status == 0:
                raise UpstreamConnectionError("mock connection failure")
            raise UpstreamHTTPError(o.fail_status, o.fail_message)

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        await self._start()
        answer = _answer(call, self.options)
        body = orjson.dumps(_whole(call, answer))
        return UpstreamReply(200, body, orjson.loads(body), {"content-type": "application/json"})

    async def open_stream(self, call: UpstreamCall) -> MockStream:
        await self._start()
        return MockStream(call, _answer(call, self.options), self.options)

    async def aclose(self) -> None:
        return None


@frozen
class _Answer:
    id: str
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    created: int


def _answer(call: UpstreamCall, options: MockOptions) -> _Answer:
    text = options.reply if options.reply is not None else f"Mock answer to: {_last_user_text(call.body)[:200]}"
    return _Answer(
        id=uuid.uuid4().hex,
        model=call.model,
        text=text,
        prompt_tokens=estimate_request(call.body),
        completion_tokens=count_text(text),
        created=int(time.time()),
    )


def _last_user_text(body: Mapping[str, Any]) -> str:
    items = body.get("messages") or body.get("input") or []
    if isinstance(items, str):
        return items
    for item in reversed(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("role", "user") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _whole(call: UpstreamCall, a: _Answer) -> dict[str, Any]:
    if call.format is Format.CHAT_COMPLETIONS:
        return {
            "id": f"chatcmpl-{a.id}",
            "object": "chat.completion",
            "created": a.created,
            "model": a.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": a.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _chat_usage(a),
        }
    if call.format is Format.RESPONSES:
        return _response(a, "completed", [_message_item(a, "completed", a.text)])
    return {
        "id": f"msg_{a.id}",
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": [{"type": "text", "text": a.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens},
    }


def _chat_usage(a: _Answer) -> dict[str, int]:
    return {
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "total_tokens": a.prompt_tokens + a.completion_tokens,
    }


def _message_item(a: _Answer, status: str, text: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    content = [] if text is None else [part]
    return {"type": "message", "id": f"msg_{a.id}", "status": status, "role": "assistant", "content": content}


def _response(a: _Answer, status: str, output: list[Any]) -> dict[str, Any]:
    done = status == "completed"
    return {
        "id": f"resp_{a.id}",
        "object": "response",
        "created_at": a.created,
        "status": status,
        "model": a.model,
        "output": output,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": a.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": a.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": a.prompt_tokens + a.completion_tokens,
        }
        if done
        else None,
    }


def _pieces(text: str, per_chunk: int) -> list[str]:
    words = text.split(" ")
    n = max(1, per_chunk)
    return [" ".join(words[i : i + n]) + (" " if i + n < len(words) else "") for i in range(0, len(words), n)]


class MockStream:
    """A stream of real SSE frames, exactly as the provider would frame them."""

    def __init__(self, call: UpstreamCall, answer: _Answer, options: MockOptions) -> None:
        self.call, self.answer, self.options = call, answer, options
        self.headers: Mapping[str, str] = {"content-type": "text/event-stream"}

    def __aiter__(self) -> AsyncIterator[SSEEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[SSEEvent]:
        frames = {
            Format.CHAT_COMPLETIONS: _chat_frames,
            Format.RESPONSES: _responses_frames,
            Format.ANTHROPIC: _anthropic_frames,
        }[self.call.format](self.call, self.answer, _pieces(self.answer.text, self.options.words_per_chunk))
        delay = self.options.chunk_delay_ms / 1000
        cut = self.options.fail_after_chunks
        for i, (event, data) in enumerate(frames):
            if cut is not None and i > cut:
                return  # a truncated stream: the connection just ends
            if delay and i:
                await asyncio.sleep(delay)
            raw = sse.encode(data if isinstance(data, bytes) else orjson.dumps(data), event)
            yield SSEEvent(event, data.decode() if isinstance(data, bytes) else orjson.dumps(data).decode(), raw)

    async def aclose(self) -> None:
        return None


Frames = list[tuple[str | None, Any]]


def _chat_frames(call: UpstreamCall, a: _Answer, pieces: list[str]) -> Frames:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{a.id}",
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    frames: Frames = [(None, chunk({"role": "assistant", "content": ""}))]
    frames += [(None, chunk({"content": p})) for p in pieces]
    frames.append((None, chunk({}, "stop")))
    opts = call.body.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage"):
        frames.append(
            (None, {"id": f"chatcmpl-{a.id}", "object": "chat.completion.chunk", "created": a.created,
                    "model": a.model, "choices": [], "usage": _chat_usage(a)})
        )
    frames.append((None, b"[DONE]"))
    return frames


def _responses_frames(call: UpstreamCall, a: _Answer, pieces: list[str]) -> Frames:
    item_id = f"msg_{a.id}"
    seq = iter(range(1_000_000))
    frames: Frames = []

    def add(kind: str, **payload: Any) -> None:
        frames.append((kind, {"type": kind, "sequence_number": next(seq), **payload}))

    add("response.created", response=_response(a, "in_progress", []))
    add("response.in_progress", response=_response(a, "in_progress", []))
    add("response.output_item.added", output_index=0, item=_message_item(a, "in_progress", None))
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    add("response.content_part.added", item_id=item_id, output_index=0, content_index=0, part=part)
    for p in pieces:
        add("response.output_text.delta", item_id=item_id, output_index=0, content_index=0, delta=p, logprobs=[])
    add("response.output_text.done", item_id=item_id, output_index=0, content_index=0, text=a.text, logprobs=[])
    add("response.content_part.done", item_id=item_id, output_index=0, content_index=0,
        part={**part, "text": a.text})
    add("response.output_item.done", output_index=0, item=_message_item(a, "completed", a.text))
    add("response.completed", response=_response(a, "completed", [_message_item(a, "completed", a.text)]))
    return frames


def _anthropic_frames(call: UpstreamCall, a: _Answer, pieces: list[str]) -> Frames:
    start = {
        "id": f"msg_{a.id}", "type": "message", "role": "assistant", "model": a.model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": a.prompt_tokens, "output_tokens": 1},
    }
    frames: Frames = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
    ]
    frames += [
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
        for p in pieces
    ]
    frames += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": a.completion_tokens}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return frames


MOCK = MockProvider()


@hookimpl
def vmx_register_providers() -> list[MockProvider]:
    return [MOCK]
