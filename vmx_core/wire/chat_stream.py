"""Chat Completions streams <-> canonical events, chunk by chunk."""

from __future__ import annotations

import time
from typing import Any

import orjson

from vmx_core.wire import canonical as c
from vmx_core.wire import usage as usage_mod
from vmx_core.wire.chat import FINISH_FROM, FINISH_TO, emit_usage
from vmx_core.wire.sse import SSEEvent, json_event


class ChatStreamParser:
    """Chat chunks -> canonical events.  Chat has no block boundaries, so a block is open from
    its first delta until a delta of another kind (or the finish) arrives.

    Thinking comes as ``reasoning_content`` text and, from servers that carry Anthropic's
    signatures (LiteLLM, this gateway), as ``thinking_blocks`` deltas: the text again, then
    ``{"type": "thinking", "thinking": "", "signature": ...}`` ending the block, and
    ``{"type": "redacted_thinking", "data": ...}`` as a block of its own."""

    def __init__(self) -> None:
        self.started = False
        self.next_index = 0
        #: The open block: (kind, canonical index); kind is "text", "thinking", "signed" (a
        #: thinking block whose signature has arrived) or a tool index.
        self.open: tuple[str | int, int] | None = None
        self.tools: dict[int, int] = {}

    def feed(self, ev: SSEEvent) -> list[c.Event]:
        out: list[c.Event] = []
        if ev.is_done:
            self._close(out)
            out.append(c.End())
            return out
        try:
            data = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            return [c.StreamError(f"the upstream sent a chunk that is not JSON: {ev.data[:100]!r}")]
        if not isinstance(data, dict):
            return out
        if "error" in data and "choices" not in data:
            err = data["error"]
            return [c.StreamError(str(err.get("message") if isinstance(err, dict) else err))]
        if not self.started:
            self.started = True
            out.append(c.Start(str(data.get("id", "")), str(data.get("model", ""))))
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            raw_blocks = delta.get("thinking_blocks")
            blocks = [b for b in raw_blocks if isinstance(b, dict)] if isinstance(raw_blocks, list) else []
            # ``reasoning_content`` (DeepSeek, vLLM) or ``reasoning`` (Groq): the thinking text,
            # unless the delta's thinking blocks repeat it (read from there, never twice).
            thinking = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thinking, str) and thinking and not any(_text(b) for b in blocks):
                out.append(c.Delta(self._thinking(out, signing=False), "thinking", thinking))
            for b in blocks:
                self._thinking_block(out, b)
            for key in ("content", "refusal"):
                text = delta.get(key)
                if isinstance(text, str) and text:
                    out.append(c.Delta(self._block(out, "text", c.Text("")), "text", text))
            for tc in delta.get("tool_calls") or []:
                self._tool(out, tc)
            if choice.get("finish_reason"):
                self._close(out)
                out.append(c.Finish(FINISH_TO.get(choice["finish_reason"], "end")))  # type: ignore[arg-type]
        u = usage_mod.from_chat(data.get("usage"))
        if u is not None:
            out.append(c.UsageEvent(u))
        return out

    def _block(self, out: list[c.Event], kind: str | int, part: c.Text | c.ToolCall | c.Thinking) -> int:
        if self.open is not None and self.open[0] == kind:
            return self.open[1]
        return self._new(out, kind, part)

    def _new(self, out: list[c.Event], kind: str | int, part: c.Text | c.ToolCall | c.Thinking) -> int:
        self._close(out)
        index = self.next_index
        self.next_index += 1
        self.open = (kind, index)
        out.append(c.BlockStart(index, part))
        return index

    def _thinking(self, out: list[c.Event], signing: bool) -> int:
        """The thinking block a delta belongs to: the open one, unless the delta brings text
        after the open block's signature, which completes a block."""
        kind = self.open[0] if self.open is not None else None
        if self.open is not None and (kind == "thinking" or (kind == "signed" and signing)):
            self.open = ("signed" if signing else "thinking", self.open[1])
            return self.open[1]
        return self._new(out, "signed" if signing else "thinking", c.Thinking(""))

    def _thinking_block(self, out: list[c.Event], b: dict[str, Any]) -> None:
        kind = b.get("type") or "thinking"
        if kind == "redacted_thinking":
            self._new(out, "redacted", c.Thinking("", redacted=str(b.get("data", ""))))
            self._close(out)
        elif kind == "thinking":
            text = _text(b)
            if text:
                out.append(c.Delta(self._thinking(out, signing=False), "thinking", text))
            sig = b.get("signature")
            if isinstance(sig, str) and sig:
                out.append(c.Delta(self._thinking(out, signing=True), "signature", sig))

    def _close(self, out: list[c.Event]) -> None:
        if self.open is not None:
            out.append(c.BlockStop(self.open[1]))
            self.open = None

    def _tool(self, out: list[c.Event], tc: Any) -> None:
        if not isinstance(tc, dict):
            return
        i = int(tc.get("index", 0))
        fn = tc.get("function") or {}
        if i not in self.tools:
            self.tools[i] = self._block(out, i, c.ToolCall(str(tc.get("id", "")), str(fn.get("name", "")), ""))
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            # A late delta for a call that is no longer open (interleaved parallel calls) still
            # goes to its own block: clients accumulate by index.
            out.append(c.Delta(self.tools[i], "arguments", args))


def _text(block: dict[str, Any]) -> str:
    """The thinking text a ``thinking_blocks`` entry adds ("" for a signature or redacted one)."""
    text = block.get("thinking")
    return text if isinstance(text, str) and (block.get("type") or "thinking") == "thinking" else ""


class ChatStreamEmitter:
    """Canonical events -> Chat chunks.  Usage goes out as the final ``choices: []`` chunk;
    the pipeline's StreamWatcher hides it from a client that did not ask for it.

    Thinking goes out as ``reasoning_content`` and, so that a client can send it back signed,
    as ``thinking_blocks`` deltas in LiteLLM's convention: each text delta again, then the
    signature as ``{"type": "thinking", "thinking": "", "signature": ...}``; a redacted block
    whole.  Each entry also carries its ``index`` among the answer's thinking blocks, which the
    ``openai`` SDK's stream helper needs to merge list deltas (it raises without one)."""

    def __init__(self, input_estimate: int | None = None) -> None:
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self.tools: dict[int, int] = {}
        #: canonical index -> position in the answer's ``thinking_blocks``
        self.thinking: dict[int, int] = {}
        self.usage: usage_mod.Usage | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> SSEEvent:
        return json_event({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        })

    def emit(self, ev: c.Event) -> list[SSEEvent]:
        if isinstance(ev, c.Delta):
            if ev.kind == "text":
                return [self._chunk({"content": ev.value})]
            if ev.kind == "thinking":
                block = {"index": self.thinking[ev.index], "type": "thinking", "thinking": ev.value}
                return [self._chunk({"reasoning_content": ev.value, "thinking_blocks": [block]})]
            if ev.kind == "arguments":
                k = self.tools[ev.index]
                return [self._chunk({"tool_calls": [{"index": k, "function": {"arguments": ev.value}}]})]
            # A signature: it ends its thinking block, and adds no text to it.
            block = {"index": self.thinking[ev.index], "type": "thinking", "thinking": "", "signature": ev.value}
            return [self._chunk({"thinking_blocks": [block]})]
        if isinstance(ev, c.Start):
            self.id, self.model = ev.id, ev.model
            if ev.usage is not None:
                self.usage = ev.usage
            return [self._chunk({"role": "assistant", "content": ""})]
        if isinstance(ev, c.BlockStart) and isinstance(ev.part, c.ToolCall):
            k = self.tools[ev.index] = len(self.tools)
            call = {"index": k, "id": ev.part.id, "type": "function", "function": {"name": ev.part.name, "arguments": ""}}
            return [self._chunk({"tool_calls": [call]})]
        if isinstance(ev, c.BlockStart) and isinstance(ev.part, c.Thinking):
            k = self.thinking[ev.index] = len(self.thinking)
            if ev.part.redacted is None:
                return []
            return [self._chunk({"thinking_blocks": [{"index": k, "type": "redacted_thinking", "data": ev.part.redacted}]})]
        if isinstance(ev, c.Finish):
            return [self._chunk({}, FINISH_FROM[ev.stop_reason])]
        if isinstance(ev, c.UsageEvent):
            self.usage = c.merge_usage(self.usage, ev.usage)
            return []
        if isinstance(ev, c.End):
            out = []
            if self.usage is not None:
                out.append(json_event({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                       "model": self.model, "choices": [], "usage": emit_usage(self.usage)}))
            out.append(SSEEvent(None, "[DONE]", b"data: [DONE]\n\n"))
            return out
        if isinstance(ev, c.StreamError):
            return [json_event({"error": {"message": ev.message, "type": ev.type, "code": "upstream_error", "param": None}})]
        return []
