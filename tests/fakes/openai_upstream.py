"""A faithful fake of OpenAI's HTTP API on a loopback port, recording what it received.

It answers ``POST {prefix}/chat/completions`` and ``POST {prefix}/responses`` with real JSON
and real SSE.  The requested *model id* selects a behaviour, so one fake serves many
resources in one gateway config:

==================  ==========================================================================
model               behaviour
==================  ==========================================================================
anything else       a normal answer ("echo: <last user text>")
``status-NNN``      HTTP NNN with an OpenAI error body (``retry-after`` header for 429)
``html-error``      HTTP 502 with an HTML page
``non-json``        HTTP 200 with ``text/plain`` garbage
``truncate``        a stream that stops after two content chunks, without its final event
``close``           the connection is closed without any answer
``hang``            never answers (until the client goes away; recorded in ``cancelled``)
``stall``           a stream that sends two chunks and then nothing
``truncate-early``  a stream cut after its lifecycle frames, before any content
``stall-early``     a stream that stalls after its lifecycle frames, before any content
``error-first``     a stream whose first event is an error
``reset``           the connection drops after content (mid-stream, or half-way through a body)
``bad-json``        a stream frame after content that is not JSON (whole answers: a cut body)
``bad-sse``         a "stream" that is not server-sent events at all
``stall-body``      a whole answer that stops half-way through its body
``leak-key``        HTTP 401 whose error message quotes the ``Authorization`` header it received
``usage-P-C``       a normal chat answer whose usage reports P prompt and C completion tokens
==================  ==========================================================================

A chat request with ``tools`` whose last message is not a tool result is answered with one
call of the first tool, ``{"city": "Paris"}``, its arguments streamed in two pieces; after a
tool result the answer is ``result: <its text>``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

#: The arguments of the fake's tool calls.
TOOL_ARGUMENTS = '{"city": "Paris"}'


def _echo_text(body: dict[str, Any]) -> str:
    items = body.get("messages") or body.get("input") or []
    if isinstance(items, str):
        return f"echo: {items}"
    if items and isinstance(items[-1], dict) and items[-1].get("role") == "tool":
        return f"result: {items[-1].get('content')}"
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return f"echo: {content}"
    return "echo: "


class FakeOpenAI(LoopbackServer):
    # ``hang`` and ``stall`` notice that the gateway abandoned them by being cancelled.
    handler_cancellation = True

    def __init__(self, prefix: str = "/v1") -> None:
        self.prefix = prefix
        self.requests: list[dict[str, Any]] = []
        self.cancelled = 0
        self.cancelled_event = asyncio.Event()
        #: Set when a request has arrived (before it is answered): what a test awaits before
        #: abandoning a ``hang`` request.
        self.received_event = asyncio.Event()

    def reset(self) -> None:
        """Forget what was received, so one fake (and one gateway) can serve many tests."""
        self.requests.clear()
        self.cancelled = 0
        self.cancelled_event = asyncio.Event()
        self.received_event = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.prefix + "/chat/completions", self._chat)
        app.router.add_post(self.prefix + "/responses", self._responses)

    async def _record(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        body = json.loads(raw)
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        self.received_event.set()
        return body

    async def _behaviour(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse | None:
        model = str(body.get("model", ""))
        if model.startswith("status-"):
            status = int(model.removeprefix("status-"))
            headers = {"retry-after": "1"} if status == 429 else {}
            err = {"error": {"message": f"fake upstream error {status}", "type": "invalid_request_error",
                             "code": f"fake_{status}", "param": None}}
            return web.json_response(err, status=status, headers=headers)
        if model == "leak-key":
            # Some real upstreams echo the credential they rejected; the gateway must mask it.
            auth = request.headers.get("Authorization", "")
            err = {"error": {"message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')}",
                             "type": "invalid_request_error", "code": "invalid_api_key", "param": None}}
            return web.json_response(err, status=401)
        if model == "html-error":
            return web.Response(status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                                content_type="text/html")
        if model == "non-json":
            return web.Response(status=200, text="this is not json", content_type="text/plain")
        if model == "close":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp drops the handler; the client sees a disconnect
        if model == "hang":
            await self._wait_forever()
        if not body.get("stream") and model in ("stall-body", "reset", "bad-json", "bad-sse"):
            # A whole answer that breaks half-way: headers and half a body, then nothing
            # (stall) or a dropped connection (reset); garbage for the malformed cases.
            resp = web.StreamResponse(headers={"content-type": "application/json"})
            await resp.prepare(request)
            await resp.write(b'{"id": "chatcmpl-x", "object": "chat.comp')
            if model == "stall-body":
                await self._wait_forever()
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        return None

    async def _wait_forever(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            self.cancelled_event.set()
            raise

    # -- chat completions ---------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        special = await self._behaviour(request, body)
        if special is not None:
            return special
        text = _echo_text(body)
        cid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body["model"]
        usage = {"prompt_tokens": 11, "completion_tokens": len(text.split()), "total_tokens": 11 + len(text.split()),
                 "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 0}}
        if str(model).startswith("usage-"):
            prompt, completion = (int(n) for n in str(model).split("-")[1:3])
            usage.update(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
        # Perplexity-style extras: a search option in the request brings citations back.
        extras: dict[str, Any] = {}
        if "search_domain_filter" in body:
            extras = {"citations": [f"https://{d}/page" for d in body["search_domain_filter"]],
                      "search_results": [{"title": d, "url": f"https://{d}/page"} for d in body["search_domain_filter"]]}
        tools = body.get("tools") or []
        messages = body.get("messages") or [{}]
        call = None
        if tools and messages[-1].get("role") != "tool":
            call = {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                    "function": {"name": tools[0]["function"]["name"], "arguments": TOOL_ARGUMENTS}}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if call is not None:
                message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
            return web.json_response({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message,
                             "logprobs": None, "finish_reason": "tool_calls" if call else "stop"}],
                "usage": usage, "system_fingerprint": "fp_fake", **extras,
            })

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": "fp_fake", **extras,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        frames = [chunk({"role": "assistant", "content": ""})]
        if call is not None:
            fn = call["function"]
            frames.append(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                 "function": {"name": fn["name"], "arguments": ""}}]}))
            frames += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                       for piece in (TOOL_ARGUMENTS[:9], TOOL_ARGUMENTS[9:])]
            frames.append(chunk({}, "tool_calls"))
        else:
            frames += [chunk({"content": w + " "}) for w in text.split()]
            frames.append(chunk({}, "stop"))
        opts = body.get("stream_options") or {}
        if opts.get("include_usage"):
            frames.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [], "usage": usage})
        return await self._sse(request, model, [(None, f) for f in frames], done=True)

    # -- responses ----------------------------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        special = await self._behaviour(request, body)
        if special is not None:
            return special
        text = _echo_text(body)
        rid, mid, created, model = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}", int(time.time()), body["model"]
        usage = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": len(text.split()),
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 9 + len(text.split())}

        def item(status: str, content: list[Any]) -> dict[str, Any]:
            return {"type": "message", "id": mid, "status": status, "role": "assistant", "content": content}

        def response(status: str, output: list[Any], with_usage: bool) -> dict[str, Any]:
            return {"id": rid, "object": "response", "created_at": created, "status": status, "model": model,
                    "output": output, "error": None, "incomplete_details": None, "instructions": None,
                    "metadata": {}, "parallel_tool_calls": True, "temperature": 1.0, "top_p": 1.0,
                    "tool_choice": "auto", "tools": [], "usage": usage if with_usage else None}

        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        if not body.get("stream"):
            return web.json_response(response("completed", [item("completed", [part])], True))
        events: list[tuple[str | None, dict[str, Any]]] = []

        def add(kind: str, **payload: Any) -> None:
            events.append((kind, {"type": kind, "sequence_number": len(events), **payload}))

        add("response.created", response=response("in_progress", [], False))
        add("response.in_progress", response=response("in_progress", [], False))
        add("response.output_item.added", output_index=0, item=item("in_progress", []))
        add("response.content_part.added", item_id=mid, output_index=0, content_index=0,
            part={**part, "text": ""})
        for w in text.split():
            add("response.output_text.delta", item_id=mid, output_index=0, content_index=0, delta=w + " ",
                logprobs=[])
        add("response.output_text.done", item_id=mid, output_index=0, content_index=0, text=text, logprobs=[])
        add("response.content_part.done", item_id=mid, output_index=0, content_index=0, part=part)
        add("response.output_item.done", output_index=0, item=item("completed", [part]))
        add("response.completed", response=response("completed", [item("completed", [part])], True))
        return await self._sse(request, model, events, done=False)

    # -- SSE ----------------------------------------------------------------------------------

    async def _sse(
        self, request: web.Request, model: str, events: list[tuple[str | None, dict[str, Any]]], done: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        # Cut after two content frames: chat opens with one role frame, Responses with four
        # lifecycle events, so the cut always lands after content reached the client.
        cut = 3 if done else 6
        if model in ("truncate-early", "stall-early"):
            cut = 1 if done else 4  # only lifecycle frames were sent
            model = model.removesuffix("-early")
        if model == "error-first":
            frame = {"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}}
            kind = "" if done else "event: error\n"
            payload = frame if done else {"type": "error", "code": "overloaded", "message": "overloaded", "sequence_number": 0}
            await resp.write(f"{kind}data: {json.dumps(payload)}\n\n".encode())
            await resp.write_eof()
            return resp
        if model == "bad-sse":
            await resp.write(b"this is not server-sent events\nat all\n\n")
            await resp.write_eof()
            return resp
        for i, (event, data) in enumerate(events):
            if model == "reset" and i >= cut:
                assert request.transport is not None
                request.transport.close()  # a connection reset mid-stream, after content
                raise asyncio.CancelledError
            if model == "bad-json" and i >= cut:
                await resp.write(b'data: {"choices": [{"delta": {"content": "bro\n\n')
                await resp.write_eof()
                return resp
            if model in ("truncate", "stall") and i >= cut:
                if model == "stall":
                    try:
                        await asyncio.Event().wait()
                    except asyncio.CancelledError:
                        self.cancelled += 1
                        self.cancelled_event.set()
                        raise
                return resp  # ends the body without the final event
            frame = (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"
            await resp.write(frame.encode())
        if done:
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
