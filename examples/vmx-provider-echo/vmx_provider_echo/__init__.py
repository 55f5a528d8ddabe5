"""``echo``: a third-party vmx provider that answers with the reversed last user message.

It implements the :class:`vmx_core.providers.Provider` protocol for the OpenAI Chat
Completions shape only, non-streaming and streaming (real SSE frames, parsed the same way an
HTTP provider's are), and registers itself through the ``vmx_register_providers`` hook.  The
package's entry point (``[project.entry-points.vmx] echo = "vmx_provider_echo"``) is what
makes vmx load this module.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from attrs import frozen

from vmx_core import hookimpl
from vmx_core.errors import UpstreamProtocolError
from vmx_core.providers import ConnectionSpec, UpstreamCall, UpstreamReply
from vmx_core.wire import sse
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEEvent, SSEParser

__version__ = "0.1.0"


@frozen
class EchoOptions:
    """The connection's ``options:``; vmx rejects any other key, with its path."""

    #: Put in front of every answer.
    prefix: str = ""
    #: Characters per streamed content chunk.
    chunk_size: int = 8


@frozen
class EchoProvider:
    name: str = "echo"
    formats: frozenset[Format] = frozenset({Format.CHAT_COMPLETIONS})
    options_type: type[Any] = EchoOptions
    #: The stream honours ``stream_options.include_usage``, so vmx can always learn the usage.
    stream_usage: bool = True

    def connect(self, spec: ConnectionSpec) -> EchoClient:
        return EchoClient(spec.options)


class EchoClient:
    """One per configured connection.  Nothing to pool: the answer is computed locally."""

    def __init__(self, options: EchoOptions) -> None:
        self.options = options

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        answer = self._answer(call)
        body = {
            "id": answer.id,
            "object": "chat.completion",
            "created": answer.created,
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": answer.usage(),
        }
        raw = orjson.dumps(body)
        return UpstreamReply(200, raw, body, {"content-type": "application/json"})

    async def open_stream(self, call: UpstreamCall) -> EchoStream:
        answer = self._answer(call)
        opts = call.body.get("stream_options")
        with_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        return EchoStream(_chat_frames(call.model, answer, self.options.chunk_size, with_usage))

    async def aclose(self) -> None:
        return None

    def _answer(self, call: UpstreamCall) -> _Answer:
        if call.format is not Format.CHAT_COMPLETIONS:
            # vmx only sends the formats listed in EchoProvider.formats; this is a safety net.
            raise UpstreamProtocolError(f"echo does not speak {call.format}")
        question = last_user_text(call.body)
        return _Answer(
            id=f"chatcmpl-echo-{uuid.uuid4().hex}",
            created=int(time.time()),
            text=self.options.prefix + question[::-1],
            prompt_words=len(question.split()),
        )


@frozen
class _Answer:
    id: str
    created: int
    text: str
    prompt_words: int

    def usage(self) -> dict[str, int]:
        completion = len(self.text.split())
        return {
            "prompt_tokens": self.prompt_words,
            "completion_tokens": completion,
            "total_tokens": self.prompt_words + completion,
        }


def last_user_text(body: Mapping[str, Any]) -> str:
    """The text of the last ``user`` message (string content or text parts)."""
    messages = body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _chat_frames(model: str, answer: _Answer, chunk_size: int, with_usage: bool) -> list[bytes]:
    """The whole answer as Chat Completions SSE frames, exactly as OpenAI frames them."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return sse.encode(orjson.dumps(data))

    size = max(1, chunk_size)
    pieces = [answer.text[i : i + size] for i in range(0, len(answer.text), size)]
    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": piece}) for piece in pieces]
    frames.append(chunk({}, "stop"))
    if with_usage:
        usage = {"id": answer.id, "object": "chat.completion.chunk", "created": answer.created,
                 "model": model, "choices": [], "usage": answer.usage()}
        frames.append(sse.encode(orjson.dumps(usage)))
    frames.append(sse.encode(b"[DONE]"))
    return frames


class EchoStream:
    """An open stream (the ``vmx_core.providers.UpstreamStream`` protocol): the frames are
    bytes on the wire, parsed back into events by vmx's SSE parser like any HTTP upstream."""

    def __init__(self, frames: list[bytes]) -> None:
        self.headers: Mapping[str, str] = {"content-type": "text/event-stream"}
        self._frames = frames
        self.closed = False

    def __aiter__(self) -> AsyncIterator[SSEEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[SSEEvent]:
        parser = SSEParser()
        for frame in self._frames:
            if self.closed:
                return
            for event in parser.feed(frame):
                yield event

    async def aclose(self) -> None:
        self.closed = True


ECHO = EchoProvider()


@hookimpl
def vmx_register_providers() -> list[EchoProvider]:
    return [ECHO]
