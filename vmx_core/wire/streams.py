"""What the gateway needs to know about a stream in each dialect, event by event:
is this event content, is the stream finished, what usage did it report, did it fail."""

from __future__ import annotations

from typing import Any

import orjson
from attrs import define

from vmx_core.errors import UpstreamProtocolError
from vmx_core.wire import usage as usage_mod
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEEvent
from vmx_core.wire.usage import Usage

_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: Frames that open a stream but carry nothing of the answer yet.
_RESPONSES_LIFECYCLE = frozenset(
    {"response.created", "response.queued", "response.in_progress", "response.output_item.added",
     "response.content_part.added"}
)
_ANTHROPIC_LIFECYCLE = frozenset({"message_start", "content_block_start", "ping"})
_CHAT_CONTENT_KEYS = ("content", "tool_calls", "function_call", "refusal", "reasoning_content", "thinking_blocks")


def _chat_has_content(chunk: Any) -> bool:
    if not isinstance(chunk, dict):
        return False
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(delta.get(k) for k in _CHAT_CONTENT_KEYS):
            return True
    # A usage-only chunk, or anything else with data and no choices, counts as content too.
    return not chunk.get("choices") and bool(chunk.get("usage"))


@define
class StreamWatcher:
    format: Format
    #: True when the gateway added ``stream_options.include_usage`` on the client's behalf;
    #: the usage-only chunk is then consumed here instead of forwarded.
    strip_usage_chunk: bool = False
    terminal: bool = False
    failed: str | None = None
    usage: Usage | None = None
    events: int = 0
    #: Set by the first event that carries content (not a lifecycle frame).
    content_started: bool = False

    def observe(self, ev: SSEEvent) -> bool:
        """Record ``ev``; return whether it should be forwarded to the client.

        Every event is parsed once: a frame that is not JSON is the upstream's failure
        (:class:`UpstreamProtocolError`), never garbage handed to the client's SDK.
        """
        self.events += 1
        chat = self.format is Format.CHAT_COMPLETIONS
        if chat and ev.data == "[DONE]":
            self.terminal = True
            return True
        try:
            data = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"the upstream sent a malformed stream event (event {self.events} is not JSON)") from None
        if type(data) is not dict:
            raise UpstreamProtocolError(f"the upstream sent a malformed stream event (event {self.events} is not an object)")
        if chat:
            # Inline rather than a method per event: a stream is dozens to thousands of them,
            # and once content has started a usual chunk needs only these two lookups.
            if "error" in data and "choices" not in data:
                self.failed = _message(data.get("error")) or "error"
                return True
            if not self.content_started and _chat_has_content(data):
                self.content_started = True
            if data.get("usage") is None:
                return True
            return self._chat_usage(data)
        if self.format is Format.RESPONSES:
            return self._responses(ev.event or data.get("type"), data)
        return self._anthropic(ev.event or data.get("type"), data)

    def _chat_usage(self, data: dict[str, Any]) -> bool:
        u = usage_mod.from_chat(data["usage"])
        if u is not None:
            self.usage = u
            if self.strip_usage_chunk and not data.get("choices"):
                return False
        return True

    def _responses(self, kind: Any, data: dict[str, Any]) -> bool:
        if not self.content_started and kind not in _RESPONSES_LIFECYCLE:
            self.content_started = True
        response = data.get("response")
        if isinstance(response, dict):
            u = usage_mod.from_responses(response.get("usage"))
            if u is not None:
                self.usage = u
        if kind == "error":
            self.failed = _message(data) or "error"
        elif kind == "response.failed":
            err = response.get("error") if isinstance(response, dict) else None
            self.failed = _message(err) or "response.failed"
        if kind in _RESPONSES_TERMINAL:
            self.terminal = True
        return True

    def _anthropic(self, kind: Any, data: dict[str, Any]) -> bool:
        if kind not in _ANTHROPIC_LIFECYCLE:
            self.content_started = True
        if kind == "message_start":
            message = data.get("message") or {}
            self.usage = usage_mod.from_anthropic(message.get("usage") if isinstance(message, dict) else None)
        elif kind == "message_delta":
            out = usage_mod.from_anthropic(data.get("usage"))
            if out is not None:
                base = self.usage or Usage()
                self.usage = Usage(
                    prompt_tokens=base.prompt_tokens or out.prompt_tokens,
                    completion_tokens=out.completion_tokens,
                    cached_tokens=base.cached_tokens or out.cached_tokens,
                    cache_creation_tokens=base.cache_creation_tokens or out.cache_creation_tokens,
                )
        elif kind == "error":
            self.failed = _message(data.get("error")) or "error"
        elif kind == "message_stop":
            self.terminal = True
        return True


def _message(err: Any) -> str | None:
    if isinstance(err, dict):
        msg = err.get("message")
        return str(msg) if msg is not None else None
    return str(err) if err else None


def usage_from_body(fmt: Format, body: Any) -> Usage | None:
    if not isinstance(body, dict):
        return None
    if fmt is Format.CHAT_COMPLETIONS:
        return usage_mod.from_chat(body.get("usage"))
    if fmt is Format.RESPONSES:
        return usage_mod.from_responses(body.get("usage"))
    return usage_mod.from_anthropic(body.get("usage"))
