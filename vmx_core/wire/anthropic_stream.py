"""Anthropic Messages streams <-> canonical events, event by event."""

from __future__ import annotations

from typing import Any

import orjson

from vmx_core.wire import canonical as c
from vmx_core.wire import usage as usage_mod
from vmx_core.wire.anthropic import STOP_FROM, STOP_TO, emit_usage
from vmx_core.wire.sse import SSEEvent, json_event

_DELTAS = {"text_delta": ("text", "text"), "input_json_delta": ("arguments", "partial_json"),
           "thinking_delta": ("thinking", "thinking"), "signature_delta": ("signature", "signature")}


class AnthropicStreamParser:
    def __init__(self) -> None:
        self.usage: usage_mod.Usage | None = None
        #: Blocks the canonical form cannot carry (server tool results, ...) are skipped whole.
        self.skipped: set[int] = set()

    def feed(self, ev: SSEEvent) -> list[c.Event]:
        kind = ev.event
        if kind == "ping":
            return []
        try:
            data = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            return [c.StreamError(f"the upstream sent an event that is not JSON: {ev.data[:100]!r}")]
        if not isinstance(data, dict):
            return []
        kind = kind or data.get("type")
        if kind == "message_start":
            msg = data.get("message") or {}
            self.usage = usage_mod.from_anthropic(msg.get("usage"))
            return [c.Start(str(msg.get("id", "")), str(msg.get("model", "")), self.usage)]
        if kind == "content_block_start":
            return self._start(int(data.get("index", 0)), data.get("content_block") or {})
        if kind == "content_block_delta":
            index = int(data.get("index", 0))
            delta = data.get("delta") or {}
            spec = _DELTAS.get(str(delta.get("type")))
            if index in self.skipped or spec is None:
                return []
            return [c.Delta(index, spec[0], str(delta.get(spec[1], "")))]  # type: ignore[arg-type]
        if kind == "content_block_stop":
            index = int(data.get("index", 0))
            return [] if index in self.skipped else [c.BlockStop(index)]
        if kind == "message_delta":
            delta = data.get("delta") or {}
            out: list[c.Event] = [c.Finish(STOP_TO.get(str(delta.get("stop_reason")), "end"), delta.get("stop_sequence"))]  # type: ignore[arg-type]
            u = usage_mod.from_anthropic(data.get("usage"))
            if u is not None:
                self.usage = c.merge_usage(self.usage, u)
            if self.usage is not None:
                out.append(c.UsageEvent(self.usage))
            return out
        if kind == "message_stop":
            return [c.End()]
        if kind == "error":
            err = data.get("error") or {}
            return [c.StreamError(str(err.get("message", "error")), str(err.get("type", "api_error")))]
        return []

    def _start(self, index: int, block: dict[str, Any]) -> list[c.Event]:
        kind = block.get("type")
        if kind == "text":
            out: list[c.Event] = [c.BlockStart(index, c.Text(""))]
            if block.get("text"):
                out.append(c.Delta(index, "text", str(block["text"])))
            return out
        if kind == "tool_use":
            return [c.BlockStart(index, c.ToolCall(str(block.get("id", "")), str(block.get("name", "")), ""))]
        if kind == "thinking":
            return [c.BlockStart(index, c.Thinking(""))]
        if kind == "redacted_thinking":
            return [c.BlockStart(index, c.Thinking("", redacted=str(block.get("data", ""))))]
        self.skipped.add(index)
        return []


class AnthropicStreamEmitter:
    """Canonical events -> Anthropic events.  ``message_start`` carries input usage: the
    upstream's when it reports it up front, else the gateway's estimate of the request; the
    real figures follow in ``message_delta`` (the SDKs overwrite with them)."""

    def __init__(self, input_estimate: int | None = None) -> None:
        self.input_estimate = input_estimate or 0
        self.index: dict[int, int] = {}
        self.finish = c.Finish("end")
        self.usage: usage_mod.Usage | None = None

    def emit(self, ev: c.Event) -> list[SSEEvent]:
        if isinstance(ev, c.Delta):
            i = self.index[ev.index]
            if ev.kind == "text":
                delta = {"type": "text_delta", "text": ev.value}
            elif ev.kind == "arguments":
                delta = {"type": "input_json_delta", "partial_json": ev.value}
            elif ev.kind == "thinking":
                delta = {"type": "thinking_delta", "thinking": ev.value}
            else:
                delta = {"type": "signature_delta", "signature": ev.value}
            return [json_event({"type": "content_block_delta", "index": i, "delta": delta}, "content_block_delta")]
        if isinstance(ev, c.Start):
            self.usage = ev.usage
            u = ev.usage or usage_mod.Usage(prompt_tokens=self.input_estimate)
            msg: dict[str, Any] = {"id": ev.id, "type": "message", "role": "assistant", "model": ev.model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": {**emit_usage(u, output=False), "output_tokens": 0}}
            return [json_event({"type": "message_start", "message": msg}, "message_start")]
        if isinstance(ev, c.BlockStart):
            i = self.index[ev.index] = len(self.index)
            return [json_event({"type": "content_block_start", "index": i, "content_block": _empty(ev.part)}, "content_block_start")]
        if isinstance(ev, c.BlockStop):
            return [json_event({"type": "content_block_stop", "index": self.index[ev.index]}, "content_block_stop")]
        if isinstance(ev, c.Finish):
            self.finish = ev
            return []
        if isinstance(ev, c.UsageEvent):
            self.usage = c.merge_usage(self.usage, ev.usage)
            return []
        if isinstance(ev, c.End):
            u = self.usage or usage_mod.Usage(prompt_tokens=self.input_estimate)
            stop: dict[str, Any] = {"stop_reason": STOP_FROM[self.finish.stop_reason], "stop_sequence": self.finish.stop_sequence}
            return [
                json_event({"type": "message_delta", "delta": stop, "usage": emit_usage(u)}, "message_delta"),
                json_event({"type": "message_stop"}, "message_stop"),
            ]
        if isinstance(ev, c.StreamError):
            return [json_event({"type": "error", "error": {"type": ev.type, "message": ev.message}}, "error")]
        return []


def _empty(part: c.Text | c.ToolCall | c.Thinking) -> dict[str, Any]:
    if isinstance(part, c.Text):
        return {"type": "text", "text": ""}
    if isinstance(part, c.ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": {}}
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    return {"type": "thinking", "thinking": "", "signature": ""}
