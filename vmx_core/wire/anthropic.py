"""Anthropic Messages <-> canonical: requests and whole responses.

Streams are in :mod:`vmx_core.wire.anthropic_stream`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from vmx_core.errors import InvalidRequest, UpstreamProtocolError
from vmx_core.wire import canonical as c
from vmx_core.wire import usage as usage_mod
from vmx_core.wire.formats import Format

TARGET = str(Format.ANTHROPIC)
#: Anthropic requires ``max_tokens``; OpenAI clients may leave it out.
DEFAULT_MAX_TOKENS = 4096
#: OpenAI reasoning effort -> Anthropic thinking budget (tokens; Anthropic's minimum is 1024).
BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768}

#: Hints with no effect on the answer's content: accepted, not carried (docs/providers.md).
_IGNORED = frozenset({"model", "stream", "cache_control", "service_tier", "inference_geo"})
_HANDLED = frozenset({"messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences", "tools",
                      "tool_choice", "thinking", "metadata", "output_config", "betas"})

STOP_TO = {"end_turn": "end", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence", "tool_use": "tool_use",
           "pause_turn": "pause", "refusal": "refusal", "model_context_window_exceeded": "max_tokens"}
STOP_FROM = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence", "tool_use": "tool_use",
             "pause": "pause_turn", "refusal": "refusal", "content_filter": "refusal"}
SOURCE = "another provider's API"


# -- requests ---------------------------------------------------------------------------------


def parse_request(body: Mapping[str, Any]) -> c.Request:
    """An Anthropic Messages body as a canonical request; 400 naming what cannot be carried."""
    for key, value in body.items():
        if key in _IGNORED or key in _HANDLED or value is None or value is False:
            continue
        raise c.unsupported(key, SOURCE, "no equivalent")
    if body.get("betas"):
        raise c.unsupported("betas", SOURCE, "Anthropic beta features")
    messages = [_message(m, f"messages[{i}]") for i, m in enumerate(body.get("messages") or [])]
    thinking = c.obj(body.get("thinking"))
    oc = c.obj(body.get("output_config"))
    budget = thinking.get("budget_tokens") if thinking.get("type") == "enabled" else None
    effort = oc.get("effort")
    if thinking.get("type") == "adaptive" and effort is None:
        effort = "medium"
    fmt = oc.get("format")
    meta = c.obj(body.get("metadata"))
    tc = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else None
    return c.Request(
        model=str(body.get("model", "")),
        messages=c.normalise(messages),
        system=_system(body.get("system")),
        tools=tuple(_tool(t, f"tools[{i}]") for i, t in enumerate(body.get("tools") or [])),
        tool_choice=_tool_choice(tc),
        parallel_tool_calls=False if tc and tc.get("disable_parallel_tool_use") else None,
        max_tokens=body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=tuple(body.get("stop_sequences") or ()),
        output_format=c.OutputFormat("json_schema", fmt.get("schema"), None, True) if isinstance(fmt, dict) else None,
        reasoning_effort={"max": "xhigh"}.get(effort, effort) if isinstance(effort, str) else None,
        thinking_budget=budget,
        stream=bool(body.get("stream")),
        user=meta.get("user_id"),
    )


def _system(system: Any) -> str | None:
    if isinstance(system, str):
        return system or None
    if isinstance(system, list):
        texts = [str(b.get("text", "")) for b in system if isinstance(b, dict) and b.get("type") == "text"]
        return "\n\n".join(texts) or None
    return None


def _message(m: Any, where: str) -> c.Message:
    if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
        raise InvalidRequest(f"{where}.role: must be user or assistant", param=f"{where}.role")
    content = m.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
    return c.Message(m["role"], tuple(_block(b, f"{where}.content[{j}]") for j, b in enumerate(blocks)))


def _block(b: Any, where: str) -> c.Part:
    kind = b.get("type") if isinstance(b, dict) else None
    if kind == "text":
        return c.Text(str(b.get("text", "")))
    if kind == "image":
        return _image(b.get("source") or {}, where)
    if kind == "tool_use":
        return c.ToolCall(str(b.get("id", "")), str(b.get("name", "")), orjson.dumps(b.get("input") or {}).decode())
    if kind == "tool_result":
        content = b.get("content")
        items = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        parts: list[c.Text | c.Image] = []
        for k, item in enumerate(items):
            p = _block(item, f"{where}.content[{k}]")
            if not isinstance(p, c.Text | c.Image):
                raise c.unsupported(f"{where}.content[{k}]", SOURCE)
            parts.append(p)
        return c.ToolResult(str(b.get("tool_use_id", "")), tuple(parts), bool(b.get("is_error")))
    if kind == "thinking":
        return c.Thinking(str(b.get("thinking", "")), b.get("signature"))
    if kind == "redacted_thinking":
        return c.Thinking("", redacted=str(b.get("data", "")))
    raise c.unsupported(f"{where}.type={kind}", SOURCE)


def _image(src: Mapping[str, Any], where: str) -> c.Image:
    if src.get("type") == "base64":
        return c.Image(media_type=src.get("media_type"), data=str(src.get("data", "")))
    if src.get("type") == "url":
        return c.Image(url=str(src.get("url", "")))
    raise c.unsupported(f"{where}.source.type={src.get('type')}", SOURCE)


def _tool(t: Any, where: str) -> c.Tool:
    if not isinstance(t, dict) or t.get("type") not in (None, "custom"):
        kind = t.get("type") if isinstance(t, dict) else t
        raise c.unsupported(f"{where}.type={kind}", SOURCE, "Anthropic server tools run only on Anthropic")
    return c.Tool(str(t.get("name", "")), t.get("description"), t.get("input_schema") or {}, t.get("strict"))


def _tool_choice(tc: Mapping[str, Any] | None) -> c.ToolChoice | None:
    if tc is None:
        return None
    kind = tc.get("type")
    if kind == "tool":
        return c.ToolChoice("tool", str(tc.get("name", "")))
    mode = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    if mode is None:
        raise c.unsupported(f"tool_choice.type={kind}", SOURCE)
    return c.ToolChoice(mode)  # type: ignore[arg-type]


def emit_request(req: c.Request) -> dict[str, Any]:
    """A canonical request as an Anthropic Messages body."""
    body: dict[str, Any] = {"model": req.model, "messages": [_emit_message(m, i) for i, m in enumerate(req.messages)]}
    if req.system:
        body["system"] = req.system
    max_tokens = req.max_tokens
    budget = req.thinking_budget
    if budget is None and req.reasoning_effort not in (None, "none"):
        budget = BUDGETS.get(str(req.reasoning_effort), BUDGETS["medium"])
    if budget is not None:
        # OpenAI's max_completion_tokens includes reasoning, as Anthropic's max_tokens includes
        # thinking: the same cap, and the budget must fit under it.
        if max_tokens is None:
            max_tokens = budget + DEFAULT_MAX_TOKENS
        budget = min(budget, max_tokens - 1)
        if budget < 1024:
            raise c.unsupported("reasoning_effort", TARGET, "max tokens leave less than the 1024-token minimum thinking budget")
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body["max_tokens"] = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    if req.temperature is not None:
        if req.temperature > 1:
            raise c.unsupported("temperature", TARGET, "Anthropic accepts 0 to 1")
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    if req.tools:
        body["tools"] = [_emit_tool(t) for t in req.tools]
    tc = _emit_tool_choice(req.tool_choice)
    if req.parallel_tool_calls is False:
        tc = {**(tc or {"type": "auto"}), "disable_parallel_tool_use": True}
    if tc is not None:
        body["tool_choice"] = tc
    of = req.output_format
    if of is not None:
        if of.kind == "json_object":
            raise c.unsupported("response_format.type=json_object", TARGET, "use json_schema")
        body["output_config"] = {"format": {"type": "json_schema", "schema": dict(of.schema or {})}}
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.stream:
        body["stream"] = True
    return body


def _emit_message(m: c.Message, i: int) -> dict[str, Any]:
    if len(m.parts) == 1 and isinstance(m.parts[0], c.Text):
        return {"role": m.role, "content": m.parts[0].text}
    blocks = [b for b in (_emit_block(p, f"messages[{i}]") for p in m.parts) if b is not None]
    return {"role": m.role, "content": blocks}


def _emit_block(p: c.Part, where: str) -> dict[str, Any] | None:
    if isinstance(p, c.Text):
        return {"type": "text", "text": p.text}
    if isinstance(p, c.Image):
        if p.data is not None:
            return {"type": "image", "source": {"type": "base64", "media_type": p.media_type or "image/png", "data": p.data}}
        return {"type": "image", "source": {"type": "url", "url": p.url}}
    if isinstance(p, c.ToolCall):
        try:
            args = orjson.loads(p.arguments or "{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest(f"{where}: tool call {p.id} has arguments that are not JSON", param=where) from None
        return {"type": "tool_use", "id": p.id, "name": p.name, "input": args}
    if isinstance(p, c.ToolResult):
        content = [b for b in (_emit_block(x, where) for x in p.content) if b is not None]
        out: dict[str, Any] = {"type": "tool_result", "tool_use_id": p.call_id, "content": content}
        if p.is_error:
            out["is_error"] = True
        return out
    if p.redacted is not None:
        return {"type": "redacted_thinking", "data": p.redacted}
    # Anthropic accepts earlier thinking only with its own signature; unsigned reasoning
    # from another model cannot be replayed (docs/providers.md).
    if p.signature:
        return {"type": "thinking", "thinking": p.text, "signature": p.signature}
    return None


def _emit_tool(t: c.Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t.name, "input_schema": dict(t.parameters) or {"type": "object", "properties": {}}}
    if t.description is not None:
        out["description"] = t.description
    if t.strict is not None:
        out["strict"] = t.strict
    return out


def _emit_tool_choice(tc: c.ToolChoice | None) -> dict[str, Any] | None:
    if tc is None:
        return None
    if tc.mode == "tool":
        return {"type": "tool", "name": tc.name}
    return {"type": {"auto": "auto", "required": "any", "none": "none"}[tc.mode]}


# -- responses --------------------------------------------------------------------------------


def parse_response(body: Mapping[str, Any]) -> c.Response:
    parts: list[c.Text | c.ToolCall | c.Thinking] = []
    for j, b in enumerate(body.get("content") or []):
        p = _block(b, f"content[{j}]")
        if isinstance(p, c.Text | c.ToolCall | c.Thinking):
            parts.append(p)
    return c.Response(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        parts=tuple(parts),
        stop_reason=STOP_TO.get(str(body.get("stop_reason")), "end"),  # type: ignore[arg-type]
        stop_sequence=body.get("stop_sequence"),
        usage=usage_mod.from_anthropic(body.get("usage")) or usage_mod.Usage(),
    )


def emit_usage(u: usage_mod.Usage, output: bool = True) -> dict[str, Any]:
    """Anthropic usage: ``input_tokens`` excludes cache reads and writes."""
    out = {
        "input_tokens": max(0, u.prompt_tokens - u.cached_tokens - u.cache_creation_tokens),
        "cache_creation_input_tokens": u.cache_creation_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }
    if output:
        out["output_tokens"] = u.completion_tokens
    return out


def emit_part(p: c.Text | c.ToolCall | c.Thinking) -> dict[str, Any]:
    if isinstance(p, c.Text):
        return {"type": "text", "text": p.text}
    if isinstance(p, c.ToolCall):
        try:
            args = orjson.loads(p.arguments or "{}")
        except orjson.JSONDecodeError:
            # The model wrote broken JSON: Anthropic's shape cannot hold it, and another leg
            # may do better (a ProviderError fails over).
            raise UpstreamProtocolError(f"tool call {p.id} has arguments that are not JSON") from None
        return {"type": "tool_use", "id": p.id, "name": p.name, "input": args}
    if p.redacted is not None:
        return {"type": "redacted_thinking", "data": p.redacted}
    return {"type": "thinking", "thinking": p.text, "signature": p.signature or ""}


def emit_response(resp: c.Response) -> dict[str, Any]:
    return {
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": [emit_part(p) for p in resp.parts],
        "stop_reason": STOP_FROM[resp.stop_reason],
        "stop_sequence": resp.stop_sequence,
        "usage": emit_usage(resp.usage),
    }
