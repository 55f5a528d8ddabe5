"""OpenAI Chat Completions <-> canonical: requests and whole responses.

Streams are in :mod:`vmx_core.wire.chat_stream`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vmx_core.errors import InvalidRequest
from vmx_core.wire import canonical as c
from vmx_core.wire import usage as usage_mod
from vmx_core.wire.formats import Format

TARGET = str(Format.CHAT_COMPLETIONS)

#: Client fields with no effect on the answer's content (storage, billing and cache hints):
#: accepted and not carried to another provider (listed in docs/providers.md).
_IGNORED = frozenset({"model", "stream", "stream_options", "store", "metadata", "service_tier",
                      "safety_identifier", "prompt_cache_key"})
_HANDLED = frozenset({"messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
                      "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort",
                      "user", "n", "frequency_penalty", "presence_penalty"})

FINISH_TO = {"stop": "end", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
             "content_filter": "content_filter"}
FINISH_FROM = {"end": "stop", "stop_sequence": "stop", "pause": "stop", "max_tokens": "length",
               "tool_use": "tool_calls", "content_filter": "content_filter", "refusal": "content_filter"}


# -- images -----------------------------------------------------------------------------------


def image_from_url(url: Any, detail: Any, where: str) -> c.Image:
    """OpenAI carries both kinds of image in one URL: ``data:`` URLs are base64 images."""
    if not isinstance(url, str):
        raise InvalidRequest(f"{where}: image url must be a string", param=where)
    d = detail if isinstance(detail, str) else None
    if url.startswith("data:"):
        head, sep, data = url[5:].partition(",")
        media_type, _, encoding = head.partition(";")
        if not sep or encoding != "base64":
            raise InvalidRequest(f"{where}: only base64 data URLs are supported", param=where)
        return c.Image(media_type=media_type or None, data=data, detail=d)
    return c.Image(url=url, detail=d)


def image_url(img: c.Image) -> str:
    if img.data is not None:
        return f"data:{img.media_type or 'image/png'};base64,{img.data}"
    return img.url or ""


# -- requests ---------------------------------------------------------------------------------


def parse_request(body: Mapping[str, Any]) -> c.Request:
    """A Chat Completions body as a canonical request; 400 naming any field it cannot carry."""
    for key, value in body.items():
        if key in _IGNORED or key in _HANDLED or value is None or value is False:
            continue
        raise c.unsupported(key, "another provider's API", "no equivalent")
    if body.get("n") not in (None, 1):
        raise c.unsupported("n", "another provider's API", "only one choice can be converted")
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise c.unsupported(name, "another provider's API", "no equivalent")
    system: list[str] = []
    messages: list[c.Message] = []
    for i, m in enumerate(body.get("messages") or []):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequest(f"{where}: must be an object", param=where)
        role = m.get("role")
        if role in ("system", "developer"):
            # Anthropic has one system prompt: instructions anywhere in the history are hoisted.
            system.extend(p.text for p in _content(m.get("content"), where, allow_images=False) if isinstance(p, c.Text))
        elif role == "user":
            messages.append(c.Message("user", tuple(_content(m.get("content"), where))))
        elif role == "assistant":
            messages.append(c.Message("assistant", _assistant(m, where)))
        elif role == "tool":
            result = c.ToolResult(str(m.get("tool_call_id", "")), tuple(_content(m.get("content"), where, allow_images=False)))
            messages.append(c.Message("user", (result,)))
        else:
            raise c.unsupported(f"{where}.role={role}", "another provider's API")
    stop = body.get("stop")
    return c.Request(
        model=str(body.get("model", "")),
        messages=c.normalise(messages),
        system="\n\n".join(system) if system else None,
        tools=tuple(_tool(t, f"tools[{i}]") for i, t in enumerate(body.get("tools") or [])),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        output_format=_response_format(body.get("response_format")),
        reasoning_effort=body.get("reasoning_effort"),
        stream=bool(body.get("stream")),
        user=body.get("user"),
    )


def _content(content: Any, where: str, allow_images: bool = True) -> list[c.Text | c.Image]:
    if content is None:
        return []
    if isinstance(content, str):
        return [c.Text(content)] if content else []
    out: list[c.Text | c.Image] = []
    for j, p in enumerate(content if isinstance(content, list) else []):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text":
            out.append(c.Text(str(p.get("text", ""))))
        elif kind == "refusal":
            out.append(c.Text(str(p.get("refusal", ""))))
        elif kind == "image_url" and allow_images:
            img = p.get("image_url") or {}
            out.append(image_from_url(img.get("url"), img.get("detail"), f"{where}.content[{j}]"))
        else:
            raise c.unsupported(f"{where}.content[{j}].type={kind}", "another provider's API")
    return out


def _assistant(m: Mapping[str, Any], where: str) -> tuple[c.Part, ...]:
    parts: list[c.Part] = []
    # Thinking comes back in the non-standard fields most OpenAI-compatible servers use.
    blocks = m.get("thinking_blocks")
    if isinstance(blocks, list):
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "redacted_thinking":
                parts.append(c.Thinking("", redacted=str(b.get("data", ""))))
            elif isinstance(b, dict):
                parts.append(c.Thinking(str(b.get("thinking", "")), b.get("signature")))
    elif isinstance(m.get("reasoning_content"), str) and m["reasoning_content"]:
        parts.append(c.Thinking(m["reasoning_content"]))
    parts.extend(_content(m.get("content"), where, allow_images=False))
    if m.get("refusal"):
        parts.append(c.Text(str(m["refusal"])))
    if m.get("function_call") or m.get("audio"):
        raise c.unsupported(f"{where}.function_call" if m.get("function_call") else f"{where}.audio", "another provider's API")
    for k, tc in enumerate(m.get("tool_calls") or []):
        fn = tc.get("function") or {} if isinstance(tc, dict) else {}
        if not isinstance(tc, dict) or tc.get("type", "function") != "function":
            raise c.unsupported(f"{where}.tool_calls[{k}].type", "another provider's API")
        parts.append(c.ToolCall(str(tc.get("id", "")), str(fn.get("name", "")), str(fn.get("arguments") or "{}")))
    return tuple(parts)


def _tool(t: Any, where: str) -> c.Tool:
    if not isinstance(t, dict) or t.get("type") != "function":
        raise c.unsupported(f"{where}.type={t.get('type') if isinstance(t, dict) else t}", "another provider's API")
    fn = t.get("function") or {}
    return c.Tool(str(fn.get("name", "")), fn.get("description"), fn.get("parameters") or {"type": "object", "properties": {}}, fn.get("strict"))


def _tool_choice(tc: Any) -> c.ToolChoice | None:
    if tc is None:
        return None
    if tc in ("auto", "none", "required"):
        return c.ToolChoice(tc)
    if isinstance(tc, dict) and tc.get("type") == "function":
        return c.ToolChoice("tool", str((tc.get("function") or {}).get("name", "")))
    raise c.unsupported("tool_choice", "another provider's API")


def _response_format(rf: Any) -> c.OutputFormat | None:
    if not isinstance(rf, dict) or rf.get("type") in (None, "text"):
        return None
    if rf["type"] == "json_object":
        return c.OutputFormat("json_object")
    if rf["type"] == "json_schema":
        js = rf.get("json_schema") or {}
        return c.OutputFormat("json_schema", js.get("schema"), js.get("name"), js.get("strict"))
    raise c.unsupported(f"response_format.type={rf['type']}", "another provider's API")


def emit_request(req: c.Request) -> dict[str, Any]:
    """A canonical request as a Chat Completions body."""
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": req.system})
    for i, m in enumerate(req.messages):
        if m.role == "assistant":
            messages.append(_emit_assistant(m, f"messages[{i}]"))
            continue
        run: list[c.Part] = []
        for p in m.parts:
            if isinstance(p, c.ToolResult):
                if run:
                    messages.append({"role": "user", "content": _emit_content(run)})
                    run = []
                messages.append({"role": "tool", "tool_call_id": p.call_id, "content": _tool_result_text(p, f"messages[{i}]")})
            else:
                run.append(p)
        if run:
            messages.append({"role": "user", "content": _emit_content(run)})
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    if req.tools:
        body["tools"] = [_emit_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        tc = req.tool_choice
        body["tool_choice"] = {"type": "function", "function": {"name": tc.name}} if tc.mode == "tool" else tc.mode
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        body["max_completion_tokens"] = req.max_tokens
    for name in ("temperature", "top_p", "user"):
        if getattr(req, name) is not None:
            body[name] = getattr(req, name)
    if req.stop:
        body["stop"] = list(req.stop)
    of = req.output_format
    if of is not None:
        if of.kind == "json_object":
            body["response_format"] = {"type": "json_object"}
        else:
            js: dict[str, Any] = {"name": of.name or "output", "schema": of.schema or {}}
            if of.strict is not None:
                js["strict"] = of.strict
            body["response_format"] = {"type": "json_schema", "json_schema": js}
    effort = req.reasoning_effort or effort_for_budget(req.thinking_budget)
    if effort:
        body["reasoning_effort"] = effort
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def effort_for_budget(budget: int | None) -> str | None:
    """Anthropic's thinking budget as an OpenAI effort (thresholds in docs/providers.md)."""
    if budget is None:
        return None
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _emit_content(parts: list[c.Part]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], c.Text):
        return parts[0].text
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, c.Text):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, c.Image):
            img: dict[str, Any] = {"url": image_url(p)}
            if p.detail:
                img["detail"] = p.detail
            out.append({"type": "image_url", "image_url": img})
    return out


def _tool_result_text(r: c.ToolResult, where: str) -> str:
    if any(isinstance(p, c.Image) for p in r.content):
        raise c.unsupported(f"{where}: an image in a tool result", TARGET, "tool messages hold text only")
    text = "".join(p.text for p in r.content if isinstance(p, c.Text))
    # Chat has no error flag on a tool result: say it in the text rather than lose it.
    return f"[tool error] {text}" if r.is_error else text


def _emit_assistant(m: c.Message, where: str) -> dict[str, Any]:
    texts = [p.text for p in m.parts if isinstance(p, c.Text)]
    calls = [p for p in m.parts if isinstance(p, c.ToolCall)]
    if any(isinstance(p, c.Image | c.ToolResult) for p in m.parts):
        raise c.unsupported(f"{where}: an image in an assistant turn", TARGET)
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}} for t in calls
        ]
    return out


def _emit_tool(t: c.Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "parameters": dict(t.parameters)}
    if t.description is not None:
        fn["description"] = t.description
    if t.strict is not None:
        fn["strict"] = t.strict
    return {"type": "function", "function": fn}


# -- responses --------------------------------------------------------------------------------


def parse_response(body: Mapping[str, Any]) -> c.Response:
    choice = (body.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    parts: list[c.Text | c.ToolCall | c.Thinking] = []
    for p in _assistant(msg, "choices[0].message"):
        if isinstance(p, c.Text | c.ToolCall | c.Thinking):
            parts.append(p)
    reason = FINISH_TO.get(str(choice.get("finish_reason")), "end")
    if msg.get("refusal"):
        reason = "refusal"
    return c.Response(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        parts=tuple(parts),
        stop_reason=reason,  # type: ignore[arg-type]
        usage=usage_mod.from_chat(body.get("usage")) or usage_mod.Usage(),
    )


def emit_usage(u: usage_mod.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def emit_response(resp: c.Response) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    texts = [p.text for p in resp.parts if isinstance(p, c.Text)]
    if texts:
        msg["content"] = "".join(texts)
    thinking = [p for p in resp.parts if isinstance(p, c.Thinking)]
    if thinking:
        # Non-standard but widespread (DeepSeek, vLLM, LiteLLM): the only place a Chat client
        # can keep thinking and its signature to send it back on the next turn.
        msg["reasoning_content"] = "".join(t.text for t in thinking)
        if any(t.signature or t.redacted is not None for t in thinking):
            msg["thinking_blocks"] = [_thinking_block(t) for t in thinking]
    calls = [p for p in resp.parts if isinstance(p, c.ToolCall)]
    if calls:
        msg["tool_calls"] = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}} for t in calls
        ]
    return {
        "id": resp.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": resp.model,
        "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": FINISH_FROM[resp.stop_reason]}],
        "usage": emit_usage(resp.usage),
    }


def _thinking_block(t: c.Thinking) -> dict[str, Any]:
    if t.redacted is not None:
        return {"type": "redacted_thinking", "data": t.redacted}
    return {"type": "thinking", "thinking": t.text, "signature": t.signature}
