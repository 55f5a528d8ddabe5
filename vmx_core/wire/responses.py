"""OpenAI Responses <-> canonical: requests and whole responses.

Streams are in :mod:`vmx_core.wire.responses_stream`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vmx_core.errors import InvalidRequest
from vmx_core.wire import canonical as c
from vmx_core.wire import usage as usage_mod
from vmx_core.wire.chat import effort_for_budget, image_from_url, image_url
from vmx_core.wire.formats import Format

TARGET = str(Format.RESPONSES)
SOURCE = "another provider's API"
#: Anthropic signatures ride in a reasoning item's ``encrypted_content`` with this tag, so the
#: gateway can tell them from OpenAI's own encrypted reasoning when the client sends them back.
SIGNATURE_TAG = "vmx.sig."
REDACTED_TAG = "vmx.red."

_IGNORED = frozenset({"model", "stream", "stream_options", "store", "metadata", "include", "service_tier",
                      "safety_identifier", "prompt_cache_key"})
_HANDLED = frozenset({"input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice",
                      "parallel_tool_calls", "text", "reasoning", "user", "truncation", "background"})


# -- requests ---------------------------------------------------------------------------------


def parse_request(body: Mapping[str, Any]) -> c.Request:
    """A Responses body as a canonical request; 400 naming what cannot be carried."""
    for key, value in body.items():
        if key in _IGNORED or key in _HANDLED or value is None or value is False:
            continue
        raise c.unsupported(key, SOURCE, "no equivalent")
    if body.get("truncation") not in (None, "disabled"):
        raise c.unsupported("truncation", SOURCE)
    if body.get("background"):
        raise c.unsupported("background", SOURCE)
    system: list[str] = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    raw = body.get("input")
    items: list[Any] = [{"role": "user", "content": raw}] if isinstance(raw, str) else list(raw or [])
    messages: list[c.Message] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}: must be an object", param=where)
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") in ("system", "developer"):
            system.extend(p.text for p in _content(item.get("content"), where) if isinstance(p, c.Text))
        elif kind == "message" and item.get("role") in ("user", "assistant"):
            messages.append(c.Message(item["role"], tuple(_content(item.get("content"), where))))
        elif kind == "function_call":
            call = c.ToolCall(str(item.get("call_id", "")), str(item.get("name", "")), str(item.get("arguments") or "{}"))
            messages.append(c.Message("assistant", (call,)))
        elif kind == "function_call_output":
            out = item.get("output")
            content = [c.Text(out)] if isinstance(out, str) else _content(out, f"{where}.output")
            messages.append(c.Message("user", (c.ToolResult(str(item.get("call_id", "")), tuple(content)),)))
        elif kind == "reasoning":
            messages.append(c.Message("assistant", (_reasoning(item),)))
        else:
            raise c.unsupported(f"{where}.type={kind}", SOURCE)
    text = c.obj(body.get("text"))
    if text.get("verbosity") not in (None, "medium"):
        raise c.unsupported("text.verbosity", SOURCE)
    reasoning = c.obj(body.get("reasoning"))
    return c.Request(
        model=str(body.get("model", "")),
        messages=c.normalise(messages),
        system="\n\n".join(system) if system else None,
        tools=tuple(_tool(t, f"tools[{i}]") for i, t in enumerate(body.get("tools") or [])),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        max_tokens=body.get("max_output_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        output_format=_format(text.get("format")),
        reasoning_effort=reasoning.get("effort"),
        stream=bool(body.get("stream")),
        user=body.get("user"),
    )


def _content(content: Any, where: str) -> list[c.Text | c.Image]:
    if isinstance(content, str):
        return [c.Text(content)] if content else []
    out: list[c.Text | c.Image] = []
    for j, p in enumerate(content if isinstance(content, list) else []):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text"):
            out.append(c.Text(str(p.get("text", ""))))
        elif kind == "refusal":
            out.append(c.Text(str(p.get("refusal", ""))))
        elif kind == "input_image" and p.get("image_url"):
            out.append(image_from_url(p.get("image_url"), p.get("detail"), f"{where}.content[{j}]"))
        else:
            raise c.unsupported(f"{where}.content[{j}].type={kind}", SOURCE)
    return out


def _reasoning(item: Mapping[str, Any]) -> c.Thinking:
    text = "".join(str(s.get("text", "")) for s in item.get("summary") or [] if isinstance(s, dict))
    enc = item.get("encrypted_content")
    if isinstance(enc, str) and enc.startswith(REDACTED_TAG):
        return c.Thinking("", redacted=enc.removeprefix(REDACTED_TAG))
    sig = enc.removeprefix(SIGNATURE_TAG) if isinstance(enc, str) and enc.startswith(SIGNATURE_TAG) else None
    return c.Thinking(text, sig)


def _tool(t: Any, where: str) -> c.Tool:
    if not isinstance(t, dict) or t.get("type") != "function":
        kind = t.get("type") if isinstance(t, dict) else t
        raise c.unsupported(f"{where}.type={kind}", SOURCE, "OpenAI's built-in tools run only on OpenAI")
    return c.Tool(str(t.get("name", "")), t.get("description"), t.get("parameters") or {}, t.get("strict"))


def _tool_choice(tc: Any) -> c.ToolChoice | None:
    if tc is None:
        return None
    if tc in ("auto", "none", "required"):
        return c.ToolChoice(tc)
    if isinstance(tc, dict) and tc.get("type") == "function":
        return c.ToolChoice("tool", str(tc.get("name", "")))
    raise c.unsupported("tool_choice", SOURCE)


def _format(f: Any) -> c.OutputFormat | None:
    if not isinstance(f, dict) or f.get("type") in (None, "text"):
        return None
    if f["type"] == "json_object":
        return c.OutputFormat("json_object")
    if f["type"] == "json_schema":
        return c.OutputFormat("json_schema", f.get("schema"), f.get("name"), f.get("strict"))
    raise c.unsupported(f"text.format.type={f['type']}", SOURCE)


def emit_request(req: c.Request) -> dict[str, Any]:
    """A canonical request as a Responses body."""
    items: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        run: list[c.Text | c.Image] = []
        for p in m.parts:
            if isinstance(p, c.Text | c.Image):
                if m.role == "assistant" and isinstance(p, c.Image):
                    raise c.unsupported(f"messages[{i}]: an image in an assistant turn", TARGET)
                run.append(p)
                continue
            _flush(items, run, m.role)
            if isinstance(p, c.ToolCall):
                items.append({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments})
            elif isinstance(p, c.ToolResult):
                only_text = all(isinstance(x, c.Text) for x in p.content)
                output: Any = "".join(x.text for x in p.content if isinstance(x, c.Text)) if only_text else _emit_content(list(p.content))
                if p.is_error and isinstance(output, str):
                    output = f"[tool error] {output}"
                items.append({"type": "function_call_output", "call_id": p.call_id, "output": output})
            # Thinking: OpenAI accepts only its own encrypted reasoning back, so another
            # model's thinking is not replayed (docs/providers.md).
        _flush(items, run, m.role)
    body: dict[str, Any] = {"model": req.model, "input": items}
    if req.system:
        body["instructions"] = req.system
    if req.tools:
        body["tools"] = [_emit_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        tc = req.tool_choice
        body["tool_choice"] = {"type": "function", "name": tc.name} if tc.mode == "tool" else tc.mode
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens
    for name in ("temperature", "top_p", "user"):
        if getattr(req, name) is not None:
            body[name] = getattr(req, name)
    if req.stop:
        raise c.unsupported("stop", TARGET, "the Responses API has no stop sequences")
    of = req.output_format
    if of is not None:
        fmt: dict[str, Any] = {"type": of.kind}
        if of.kind == "json_schema":
            fmt.update(name=of.name or "output", schema=dict(of.schema or {}))
            if of.strict is not None:
                fmt["strict"] = of.strict
        body["text"] = {"format": fmt}
    effort = req.reasoning_effort or effort_for_budget(req.thinking_budget)
    if effort:
        body["reasoning"] = {"effort": effort, "summary": "auto"}
    if req.stream:
        body["stream"] = True
    return body


def _flush(items: list[dict[str, Any]], run: list[c.Text | c.Image], role: str) -> None:
    if role == "assistant":
        # One message per text: an assistant input message holds a plain string.
        items.extend({"role": role, "content": p.text} for p in run if isinstance(p, c.Text))
    elif run:
        items.append({"role": role, "content": _emit_content(run)})
    run.clear()


def _emit_content(parts: list[c.Text | c.Image]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], c.Text):
        return parts[0].text
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, c.Text):
            out.append({"type": "input_text", "text": p.text})
        else:
            out.append({"type": "input_image", "image_url": image_url(p), "detail": p.detail or "auto"})
    return out


def _emit_tool(t: c.Tool) -> dict[str, Any]:
    # Responses defaults ``strict`` to true, Chat to false: say it, so meaning survives.
    out: dict[str, Any] = {"type": "function", "name": t.name, "parameters": dict(t.parameters), "strict": bool(t.strict)}
    if t.description is not None:
        out["description"] = t.description
    return out


# -- responses --------------------------------------------------------------------------------


def parse_response(body: Mapping[str, Any]) -> c.Response:
    parts: list[c.Text | c.ToolCall | c.Thinking] = []
    refused = False
    for item in body.get("output") or []:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for p in item.get("content") or []:
                if p.get("type") == "output_text":
                    parts.append(c.Text(str(p.get("text", ""))))
                elif p.get("type") == "refusal":
                    parts.append(c.Text(str(p.get("refusal", ""))))
                    refused = True
        elif kind == "function_call":
            parts.append(c.ToolCall(str(item.get("call_id", "")), str(item.get("name", "")), str(item.get("arguments", ""))))
        elif kind == "reasoning":
            parts.append(_reasoning(item))
    return c.Response(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        parts=tuple(parts),
        stop_reason=stop_reason(body, parts, refused),
        usage=usage_mod.from_responses(body.get("usage")) or usage_mod.Usage(),
    )


def stop_reason(body: Mapping[str, Any], parts: list[Any], refused: bool = False) -> c.StopReason:
    if body.get("status") == "incomplete":
        why = (body.get("incomplete_details") or {}).get("reason")
        return "content_filter" if why == "content_filter" else "max_tokens"
    if refused:
        return "refusal"
    return "tool_use" if any(isinstance(p, c.ToolCall) for p in parts) else "end"


def emit_usage(u: usage_mod.Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_creation_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def emit_item(p: c.Text | c.ToolCall | c.Thinking, n: int, rid: str, status: str = "completed") -> dict[str, Any]:
    """The output item for one part; ``n`` numbers the items of one response for their ids."""
    if isinstance(p, c.Text):
        content = [{"type": "output_text", "text": p.text, "annotations": [], "logprobs": []}]
        return {"type": "message", "id": f"msg_{rid}_{n}", "status": status, "role": "assistant", "content": content}
    if isinstance(p, c.ToolCall):
        return {"type": "function_call", "id": f"fc_{rid}_{n}", "call_id": p.id, "name": p.name,
                "arguments": p.arguments, "status": status}
    item: dict[str, Any] = {"type": "reasoning", "id": f"rs_{rid}_{n}",
                            "summary": [{"type": "summary_text", "text": p.text}] if p.text else []}
    if p.redacted is not None:
        item["encrypted_content"] = REDACTED_TAG + p.redacted
    elif p.signature:
        item["encrypted_content"] = SIGNATURE_TAG + p.signature
    return item


def emit_response(resp: c.Response, status: str | None = None) -> dict[str, Any]:
    rid = resp.id.removeprefix("resp_")
    incomplete = resp.stop_reason in ("max_tokens", "content_filter")
    return {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status or ("incomplete" if incomplete else "completed"),
        "model": resp.model,
        "output": [emit_item(p, n, rid) for n, p in enumerate(resp.parts)],
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens" if resp.stop_reason == "max_tokens" else "content_filter"}
        if incomplete and status is None else None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": None,
        "top_p": None,
        "tool_choice": "auto",
        "tools": [],
        "usage": emit_usage(resp.usage) if status is None else None,
    }
