"""AWS Bedrock Converse <-> canonical: requests out, whole answers and stream events back.

Converse is a provider dialect only (no client speaks it), so only those three directions
exist.  Its stream arrives as event-stream frames; the provider hands each one over as an
``SSEEvent`` whose ``event`` is the frame's ``:event-type`` and whose ``data`` is its JSON.
Converse reports no model or id, so the provider adds ``model`` to ``messageStart`` and to
the whole answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from vmx_core.errors import InvalidRequest
from vmx_core.wire import canonical as c
from vmx_core.wire.anthropic import BUDGETS, DEFAULT_MAX_TOKENS
from vmx_core.wire.sse import SSEEvent
from vmx_core.wire.usage import Usage

NAME = "bedrock-converse"
STOP_TO = {"end_turn": "end", "tool_use": "tool_use", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence",
           "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
           "model_context_window_exceeded": "max_tokens"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp"}


def emit_request(req: c.Request) -> dict[str, Any]:
    """A canonical request as a Converse body (the model id goes in the URL)."""
    body: dict[str, Any] = {"messages": [_message(m, i) for i, m in enumerate(req.messages)]}
    if req.system:
        body["system"] = [{"text": req.system}]
    inference: dict[str, Any] = {}
    max_tokens = req.max_tokens
    budget = req.thinking_budget
    if budget is None and req.reasoning_effort not in (None, "none"):
        budget = BUDGETS.get(str(req.reasoning_effort), BUDGETS["medium"])
    if budget is not None:
        max_tokens = max_tokens if max_tokens is not None else budget + DEFAULT_MAX_TOKENS
        budget = min(budget, max_tokens - 1)
        if budget < 1024:
            raise c.unsupported("reasoning_effort", NAME, "max tokens leave less than the 1024-token minimum thinking budget")
        # Claude's extended thinking, through the model-specific field (other model families
        # reject it, and their 400 is passed on).
        body["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": budget}}
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if req.temperature is not None:
        inference["temperature"] = req.temperature
    if req.top_p is not None:
        inference["topP"] = req.top_p
    if req.stop:
        inference["stopSequences"] = list(req.stop)
    if inference:
        body["inferenceConfig"] = inference
    if req.tools:
        config: dict[str, Any] = {"tools": [{"toolSpec": _tool(t)} for t in req.tools]}
        tc = req.tool_choice
        if tc is not None and tc.mode == "none":
            raise c.unsupported("tool_choice", NAME, "Converse cannot forbid tool use while tools are given")
        if tc is not None:
            config["toolChoice"] = {"tool": {"name": tc.name}} if tc.mode == "tool" else {"any" if tc.mode == "required" else "auto": {}}
        body["toolConfig"] = config
    if req.parallel_tool_calls is False:
        raise c.unsupported("parallel_tool_calls", NAME, "no way to forbid parallel calls")
    if req.output_format is not None:
        raise c.unsupported("response_format", NAME, "no structured output")
    return body


def _tool(t: c.Tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": t.name, "inputSchema": {"json": dict(t.parameters) or {"type": "object"}}}
    if t.description:
        spec["description"] = t.description
    return spec


def _message(m: c.Message, i: int) -> dict[str, Any]:
    content = [b for b in (_block(p, f"messages[{i}]") for p in m.parts) if b is not None]
    return {"role": m.role, "content": content}


def _image(img: c.Image, where: str) -> dict[str, Any]:
    if img.data is None:
        raise c.unsupported(f"{where}: an image by URL", NAME, "Converse takes image bytes only")
    fmt = _IMAGE_FORMATS.get(img.media_type or "")
    if fmt is None:
        raise c.unsupported(f"{where}: image type {img.media_type}", NAME)
    return {"image": {"format": fmt, "source": {"bytes": img.data}}}


def _block(p: c.Part, where: str) -> dict[str, Any] | None:
    if isinstance(p, c.Text):
        return {"text": p.text}
    if isinstance(p, c.Image):
        return _image(p, where)
    if isinstance(p, c.ToolCall):
        try:
            args = orjson.loads(p.arguments or "{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest(f"{where}: tool call {p.id} has arguments that are not JSON", param=where) from None
        return {"toolUse": {"toolUseId": p.id, "name": p.name, "input": args}}
    if isinstance(p, c.ToolResult):
        content = [{"text": x.text} if isinstance(x, c.Text) else _image(x, where) for x in p.content]
        return {"toolResult": {"toolUseId": p.call_id, "content": content, "status": "error" if p.is_error else "success"}}
    if p.redacted is not None:
        return {"reasoningContent": {"redactedContent": p.redacted}}
    # Like Anthropic's API, Bedrock replays only signed reasoning.
    if p.signature:
        return {"reasoningContent": {"reasoningText": {"text": p.text, "signature": p.signature}}}
    return None


def usage(raw: Any) -> Usage:
    """Converse's ``inputTokens`` excludes cache reads and writes, as Anthropic's does."""
    u = c.obj(raw)
    cached, written = int(u.get("cacheReadInputTokens") or 0), int(u.get("cacheWriteInputTokens") or 0)
    return Usage(prompt_tokens=int(u.get("inputTokens") or 0) + cached + written,
                 completion_tokens=int(u.get("outputTokens") or 0), cached_tokens=cached, cache_creation_tokens=written)


def parse_response(body: Mapping[str, Any]) -> c.Response:
    message = c.obj(c.obj(body.get("output")).get("message"))
    parts: list[c.Text | c.ToolCall | c.Thinking] = []
    for b in message.get("content") or []:
        if "text" in b:
            parts.append(c.Text(str(b["text"])))
        elif "toolUse" in b:
            tu = b["toolUse"]
            parts.append(c.ToolCall(str(tu.get("toolUseId", "")), str(tu.get("name", "")), orjson.dumps(tu.get("input") or {}).decode()))
        elif "reasoningContent" in b:
            rc = b["reasoningContent"]
            if "redactedContent" in rc:
                parts.append(c.Thinking("", redacted=str(rc["redactedContent"])))
            else:
                rt = c.obj(rc.get("reasoningText"))
                parts.append(c.Thinking(str(rt.get("text", "")), rt.get("signature")))
    return c.Response(
        id=f"msg_bdrk_{uuid.uuid4().hex[:20]}",
        model=str(body.get("model", "")),
        parts=tuple(parts),
        stop_reason=STOP_TO.get(str(body.get("stopReason")), "end"),  # type: ignore[arg-type]
        usage=usage(body.get("usage")),
    )


class ConverseStreamParser:
    """ConverseStream events -> canonical.  Text blocks have no ``contentBlockStart``: a
    block opens at its first delta; the usage comes in ``metadata``, after ``messageStop``."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def feed(self, ev: SSEEvent) -> list[c.Event]:
        try:
            data = c.obj(orjson.loads(ev.data))
        except orjson.JSONDecodeError:
            return [c.StreamError(f"Bedrock sent an event that is not JSON: {ev.data[:100]!r}")]
        kind = ev.event
        if kind == "messageStart":
            return [c.Start(f"msg_bdrk_{uuid.uuid4().hex[:20]}", str(data.get("model", "")))]
        index = int(data.get("contentBlockIndex", 0))
        if kind == "contentBlockStart":
            tu = c.obj(c.obj(data.get("start")).get("toolUse"))
            self.open.add(index)
            return [c.BlockStart(index, c.ToolCall(str(tu.get("toolUseId", "")), str(tu.get("name", "")), ""))]
        if kind == "contentBlockDelta":
            return self._delta(index, c.obj(data.get("delta")))
        if kind == "contentBlockStop":
            self.open.discard(index)
            return [c.BlockStop(index)]
        if kind == "messageStop":
            return [c.Finish(STOP_TO.get(str(data.get("stopReason")), "end"))]  # type: ignore[arg-type]
        if kind == "metadata":
            return [c.UsageEvent(usage(data.get("usage"))), c.End()]
        if kind == "exception":
            return [c.StreamError(str(data.get("message", "Bedrock stream error")), str(data.get("type", "api_error")))]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[c.Event]:
        out: list[c.Event] = []
        rc = c.obj(delta.get("reasoningContent"))
        if index not in self.open:
            self.open.add(index)
            if "redactedContent" in rc:
                return [c.BlockStart(index, c.Thinking("", redacted=str(rc["redactedContent"])))]
            out.append(c.BlockStart(index, c.Thinking("") if rc else c.Text("")))
        if "text" in delta:
            out.append(c.Delta(index, "text", str(delta["text"])))
        elif "toolUse" in delta:
            out.append(c.Delta(index, "arguments", str(c.obj(delta["toolUse"]).get("input", ""))))
        elif "text" in rc:
            out.append(c.Delta(index, "thinking", str(rc["text"])))
        elif "signature" in rc:
            out.append(c.Delta(index, "signature", str(rc["signature"])))
        return out
