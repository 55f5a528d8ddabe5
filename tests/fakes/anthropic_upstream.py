"""A faithful fake of Anthropic's Messages API on a loopback port, recording what it received.

``POST /v1/messages`` answers with real JSON or the real SSE sequence (``message_start`` with
input and cache usage, ``content_block_start``, ``ping``, deltas, ``content_block_stop``,
``message_delta``, ``message_stop``); ``POST /v1/messages/count_tokens`` counts.  It checks
``x-api-key`` and ``anthropic-version`` like Anthropic does.  What it answers:

=======================  =====================================================================
request                  answer
=======================  =====================================================================
``thinking`` enabled     a thinking block (``thinking_delta`` then ``signature_delta``) first
``tools`` given, and     "Let me check." and a ``tool_use`` of the first tool with
no ``tool_result`` yet   ``{"city": "Paris"}``, its JSON streamed in three ``input_json_delta``
anything else            ``echo: <last user text>``; after a tool result, ``result: <text>``
model ``status-NNN``     HTTP NNN with an Anthropic error body
=======================  =====================================================================
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

API_KEY = "sk-ant-fake-SECRET-0123456789"
SIGNATURE = "EqQBCgIYAhIMfakesignature=="
TOOL_INPUT = {"city": "Paris"}
#: Usage the fake reports: input excludes the cache reads and writes, as Anthropic's does.
USAGE = {"input_tokens": 11, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3}


def _last_user(body: dict[str, Any]) -> tuple[str, bool]:
    """(the last user text, whether the conversation already holds a tool result)."""
    has_result = False
    text = ""
    for m in body.get("messages") or []:
        content = m.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for b in blocks:
            if b.get("type") == "tool_result":
                has_result = True
                inner = b.get("content")
                text = inner if isinstance(inner, str) else " ".join(x.get("text", "") for x in inner or [])
                text = f"result: {text}"
            elif b.get("type") == "text" and m.get("role") == "user":
                text = f"echo: {b['text']}"
    return text or "echo: ", has_result


def answer_blocks(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The content blocks of the answer and its stop reason."""
    text, has_result = _last_user(body)
    blocks: list[dict[str, Any]] = []
    if (body.get("thinking") or {}).get("type") == "enabled":
        blocks.append({"type": "thinking", "thinking": "Let me think about this.", "signature": SIGNATURE})
    tools = body.get("tools") or []
    if tools and not has_result:
        blocks.append({"type": "text", "text": "Let me check."})
        blocks.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}", "name": tools[0]["name"], "input": TOOL_INPUT})
        return blocks, "tool_use"
    blocks.append({"type": "text", "text": text})
    return blocks, "end_turn"


class FakeAnthropic(LoopbackServer):
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count)

    async def _check(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = json.loads(await request.read())
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if request.headers.get("x-api-key") != API_KEY:
            return body, _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return body, _error(400, "invalid_request_error", "anthropic-version: header is required")
        if "betas" in body:
            return body, _error(400, "invalid_request_error", "betas: Extra inputs are not permitted")
        model = str(body.get("model", ""))
        if model.startswith("status-"):
            status = int(model.removeprefix("status-"))
            return body, _error(status, "overloaded_error" if status >= 500 else "invalid_request_error", f"fake error {status}")
        return body, None

    async def _count(self, request: web.Request) -> web.Response:
        body, refused = await self._check(request)
        return refused or web.json_response({"input_tokens": 7 + 3 * len(body.get("messages") or [])})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._check(request)
        if refused is not None:
            return refused
        if not isinstance(body.get("max_tokens"), int):
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        if not body.get("stream"):
            return web.json_response(whole_message(body))
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        for kind, payload in stream_events(body):
            await resp.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())
        await resp.write_eof()
        return resp


def whole_message(body: dict[str, Any]) -> dict[str, Any]:
    """The whole (non-streamed) answer to ``body``."""
    blocks, stop = answer_blocks(body)
    output_tokens = sum(len(json.dumps(b).split()) for b in blocks)
    return {"id": f"msg_{uuid.uuid4().hex[:16]}", "type": "message", "role": "assistant", "model": body.get("model", "claude"),
            "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": {**USAGE, "output_tokens": output_tokens}}


def stream_events(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The streamed answer to ``body``: Anthropic's event sequence, ``ping`` included."""
    blocks, stop = answer_blocks(body)
    output_tokens = sum(len(json.dumps(b).split()) for b in blocks)
    events: list[tuple[str, dict[str, Any]]] = []

    def add(kind: str, **payload: Any) -> None:
        events.append((kind, {"type": kind, **payload}))

    start = {"id": f"msg_{uuid.uuid4().hex[:16]}", "type": "message", "role": "assistant", "model": body.get("model", "claude"),
             "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**USAGE, "output_tokens": 1}}
    add("message_start", message=start)
    for i, block in enumerate(blocks):
        _block(add, i, block)
        if i == 0:
            add("ping")
    add("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage={"output_tokens": output_tokens})
    add("message_stop")
    return events


def _block(add: Any, i: int, block: dict[str, Any]) -> None:
    kind = block["type"]
    if kind == "text":
        add("content_block_start", index=i, content_block={"type": "text", "text": ""})
        words = block["text"].split(" ")
        for n, w in enumerate(words):
            add("content_block_delta", index=i, delta={"type": "text_delta", "text": w if n == len(words) - 1 else w + " "})
    elif kind == "thinking":
        add("content_block_start", index=i, content_block={"type": "thinking", "thinking": "", "signature": ""})
        add("content_block_delta", index=i, delta={"type": "thinking_delta", "thinking": block["thinking"]})
        add("content_block_delta", index=i, delta={"type": "signature_delta", "signature": block["signature"]})
    else:
        add("content_block_start", index=i, content_block={**block, "input": {}})
        raw = json.dumps(block["input"])
        for piece in ("", raw[:5], raw[5:]):
            add("content_block_delta", index=i, delta={"type": "input_json_delta", "partial_json": piece})
    add("content_block_stop", index=i)


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)
