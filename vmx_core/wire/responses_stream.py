"""Responses streams <-> canonical events, event by event."""

from __future__ import annotations

from typing import Any

import orjson

from vmx_core.wire import canonical as c
from vmx_core.wire import usage as usage_mod
from vmx_core.wire.responses import (
    REDACTED_TAG,
    SIGNATURE_TAG,
    emit_item,
    emit_response,
    stop_reason,
)
from vmx_core.wire.sse import SSEEvent, json_event

_DELTAS = {"response.output_text.delta": "text", "response.refusal.delta": "text",
           "response.function_call_arguments.delta": "arguments",
           "response.reasoning_summary_text.delta": "thinking", "response.reasoning_text.delta": "thinking"}


class ResponsesStreamParser:
    def __init__(self) -> None:
        self.next_index = 0
        #: (output_index, content_index or -1) -> canonical block index
        self.blocks: dict[tuple[int, int], int] = {}
        self.saw_tool = False

    def _new(self, key: tuple[int, int], part: c.Text | c.ToolCall | c.Thinking) -> list[c.Event]:
        index = self.blocks[key] = self.next_index
        self.next_index += 1
        return [c.BlockStart(index, part)]

    def _find(self, data: dict[str, Any]) -> int | None:
        out = int(data.get("output_index", 0))
        ci = data.get("content_index")
        if isinstance(ci, int) and (out, ci) in self.blocks:
            return self.blocks[(out, ci)]
        return self.blocks.get((out, -1))

    def feed(self, ev: SSEEvent) -> list[c.Event]:
        try:
            data = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            return [c.StreamError(f"the upstream sent an event that is not JSON: {ev.data[:100]!r}")]
        if not isinstance(data, dict):
            return []
        kind = ev.event or data.get("type")
        out = int(data.get("output_index", 0))
        if kind in _DELTAS:
            index = self._find(data)
            if index is None:  # a reasoning text with no part announced: open one
                self._new((out, -1), c.Thinking(""))
                index = self.blocks[(out, -1)]
            return [c.Delta(index, _DELTAS[kind], str(data.get("delta", "")))]  # type: ignore[arg-type]
        if kind == "response.created":
            resp = data.get("response") or {}
            return [c.Start(str(resp.get("id", "")), str(resp.get("model", "")))]
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                self.saw_tool = True
                return self._new((out, -1), c.ToolCall(str(item.get("call_id", "")), str(item.get("name", "")), ""))
            if item.get("type") == "reasoning":
                enc = item.get("encrypted_content")
                if isinstance(enc, str) and enc.startswith(REDACTED_TAG):
                    return self._new((out, -1), c.Thinking("", redacted=enc.removeprefix(REDACTED_TAG)))
                return self._new((out, -1), c.Thinking(""))
            return []
        if kind == "response.content_part.added":
            return self._new((out, int(data.get("content_index", 0))), c.Text(""))
        if kind == "response.content_part.done":
            index = self.blocks.get((out, int(data.get("content_index", 0))))
            return [c.BlockStop(index)] if index is not None else []
        if kind == "response.output_item.done":
            index = self.blocks.get((out, -1))
            if index is None:
                return []
            item = data.get("item") or {}
            enc = item.get("encrypted_content") if isinstance(item, dict) else None
            if item.get("type") == "reasoning" and isinstance(enc, str) and enc.startswith(SIGNATURE_TAG):
                # The signature is known only once the thinking is: it rides in the done item.
                return [c.Delta(index, "signature", enc.removeprefix(SIGNATURE_TAG)), c.BlockStop(index)]
            return [c.BlockStop(index)]
        if kind in ("response.completed", "response.incomplete"):
            resp = data.get("response") or {}
            events: list[c.Event] = [c.Finish(stop_reason(resp, [c.ToolCall("", "", "")] if self.saw_tool else []))]
            u = usage_mod.from_responses(resp.get("usage"))
            if u is not None:
                events.append(c.UsageEvent(u))
            return [*events, c.End()]
        if kind == "response.failed":
            err = (data.get("response") or {}).get("error") or {}
            return [c.StreamError(str(err.get("message", "response.failed")))]
        if kind == "error":
            return [c.StreamError(str(data.get("message", "error")))]
        return []


class ResponsesStreamEmitter:
    """Canonical events -> Responses' typed events.  Each canonical block is one output item
    (a message with one ``output_text`` part, a ``function_call`` or a ``reasoning`` item)."""

    def __init__(self, input_estimate: int | None = None) -> None:
        self.seq = 0
        self.acc = c.Accumulator()
        self.rid = ""
        self.items: dict[int, int] = {}
        self.ids: dict[int, str] = {}

    def _ev(self, kind: str, **payload: Any) -> SSEEvent:
        ev = json_event({"type": kind, "sequence_number": self.seq, **payload}, kind)
        self.seq += 1
        return ev

    def _skeleton(self, status: str) -> dict[str, Any]:
        return emit_response(c.Response(self.rid, self.acc.model, ()), status=status)

    def emit(self, ev: c.Event) -> list[SSEEvent]:
        self.acc.add(ev)
        if isinstance(ev, c.Delta):
            n, item_id = self.items[ev.index], self.ids[ev.index]
            if ev.kind == "text":
                return [self._ev("response.output_text.delta", item_id=item_id, output_index=n, content_index=0,
                                 delta=ev.value, logprobs=[])]
            if ev.kind == "arguments":
                return [self._ev("response.function_call_arguments.delta", item_id=item_id, output_index=n, delta=ev.value)]
            if ev.kind == "thinking":
                return [self._ev("response.reasoning_summary_text.delta", item_id=item_id, output_index=n,
                                 summary_index=0, delta=ev.value)]
            return []  # signatures are carried in the finished item's encrypted_content
        if isinstance(ev, c.Start):
            self.rid = ev.id.removeprefix("resp_")
            return [self._ev("response.created", response=self._skeleton("in_progress")),
                    self._ev("response.in_progress", response=self._skeleton("in_progress"))]
        if isinstance(ev, c.BlockStart):
            n = self.items[ev.index] = len(self.items)
            item = emit_item(ev.part, n, self.rid, "in_progress")
            self.ids[ev.index] = item["id"]
            if isinstance(ev.part, c.Text):
                item["content"] = []
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                return [self._ev("response.output_item.added", output_index=n, item=item),
                        self._ev("response.content_part.added", item_id=item["id"], output_index=n, content_index=0, part=part)]
            if isinstance(ev.part, c.Thinking):
                if ev.part.redacted is None:  # a signature comes with the done item; redacted data is known now
                    item.pop("encrypted_content", None)
                item["summary"] = []
                return [self._ev("response.output_item.added", output_index=n, item=item),
                        self._ev("response.reasoning_summary_part.added", item_id=item["id"], output_index=n,
                                 summary_index=0, part={"type": "summary_text", "text": ""})]
            return [self._ev("response.output_item.added", output_index=n, item=item)]
        if isinstance(ev, c.BlockStop):
            return self._done(ev.index)
        if isinstance(ev, c.End):
            resp = self.acc.response()
            kind = "response.incomplete" if resp.stop_reason in ("max_tokens", "content_filter") else "response.completed"
            body = emit_response(c.Response(self.rid, resp.model, resp.parts, resp.stop_reason, usage=resp.usage))
            return [self._ev(kind, response=body)]
        if isinstance(ev, c.StreamError):
            return [self._ev("error", code="upstream_error", message=ev.message, param=None)]
        return []

    def _done(self, index: int) -> list[SSEEvent]:
        n = self.items[index]
        part = self.acc.part(index)
        item = emit_item(part, n, self.rid)
        out: list[SSEEvent] = []
        if isinstance(part, c.Text):
            text_part = item["content"][0]
            out += [self._ev("response.output_text.done", item_id=item["id"], output_index=n, content_index=0,
                             text=part.text, logprobs=[]),
                    self._ev("response.content_part.done", item_id=item["id"], output_index=n, content_index=0, part=text_part)]
        elif isinstance(part, c.ToolCall):
            out.append(self._ev("response.function_call_arguments.done", item_id=item["id"], output_index=n,
                                name=part.name, arguments=part.arguments))
        else:
            out += [self._ev("response.reasoning_summary_text.done", item_id=item["id"], output_index=n, summary_index=0,
                             text=part.text),
                    self._ev("response.reasoning_summary_part.done", item_id=item["id"], output_index=n, summary_index=0,
                             part={"type": "summary_text", "text": part.text})]
        out.append(self._ev("response.output_item.done", output_index=n, item=item))
        return out
