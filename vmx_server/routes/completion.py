"""The completion endpoints under ``/v1/completion/{workspace}/{environment}`` (DESIGN §2).

Each is a raw ASGI app (see ``vmx_server.streaming`` for why): Starlette still routes to them
and lists them, and ``VmxApp`` in ``vmx_server.app`` reaches them without its router.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vmx_core import ClientRequest, Completion, Format, Gateway
from vmx_core.errors import RequestError
from vmx_core.reply import Reply
from vmx_server.disconnect import DisconnectWatch
from vmx_server.errors import error_response, send_error
from vmx_server.streaming import (
    EVENT_STREAM,
    ClientDisconnected,
    receive_body,
    request_headers,
    response_start,
    send_whole,
)

log = structlog.get_logger("vmx.server")

BASE = "/v1/completion/{workspace}/{environment}"
PREFIX = "/v1/completion/"


def api_key_of(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None


def _source_ip(scope: Scope, headers: Mapping[str, str]) -> str | None:
    forwarded = headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip()
    client = scope.get("client")
    return str(client[0]) if client else None


class CompletionEndpoint:
    """One completion endpoint: authenticate before reading the body, run the call under a
    disconnect watch, and write the answer (whole, or frame by frame) straight to ASGI."""

    def __init__(self, gateway: Gateway, fmt: Format, *, count: bool = False) -> None:
        self.gateway = gateway
        self.format = fmt
        self.dialect = fmt.dialect
        self.handle: Callable[[ClientRequest], Awaitable[Reply]] = gateway.count_tokens if count else gateway.handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        ws, env = params["workspace"], params["environment"]
        headers = request_headers(scope)
        api_key = api_key_of(headers)
        gateway, fmt = self.gateway, self.format
        try:
            # Before reading the body: an unauthenticated caller learns nothing, not even
            # whether its body was too large.
            gateway.authenticate(api_key, ws, env)
            body = await receive_body(receive, headers.get("content-length"), gateway.config.limits.max_body_bytes)
        except RequestError as err:
            refused = ClientRequest(fmt, ws, env, b"", api_key, headers, _source_ip(scope, headers))
            await send_error(send, gateway.reject(refused, err), self.dialect)
            return
        except ClientDisconnected:
            return
        call = ClientRequest(fmt, ws, env, body, api_key, headers, _source_ip(scope, headers))
        watch = DisconnectWatch(receive)
        try:
            try:
                reply = await self.handle(call)
            except RequestError as err:
                watch.stop()
                await send_error(send, err, self.dialect)
                return
            if isinstance(reply, Completion):
                watch.stop()
                await send_whole(send, reply.status, reply.headers, reply.body)
                return
            try:
                await send(response_start(
                    reply.status, {**reply.headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
                    EVENT_STREAM, None,
                ))
                async for frame in reply.frames:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                watch.stop()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                # Releases the upstream and writes the audit record, whatever ended the stream
                # (the relay shields those steps from a second cancellation itself).
                await reply.aclose()
        except asyncio.CancelledError:
            if not watch.absorb():
                raise
        finally:
            watch.stop()


def models_endpoint(gateway: Gateway) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        ws = request.path_params["workspace"]
        env = request.path_params["environment"]
        try:
            names = gateway.models(ws, env, api_key=api_key_of(request.headers) or "")
        except RequestError as err:
            return error_response(err, "openai")
        data = [{"id": n, "object": "model", "created": 0, "owned_by": f"{ws}/{env}"} for n in names]
        return JSONResponse({"object": "list", "data": data})

    return endpoint


def endpoints(gateway: Gateway) -> dict[str, CompletionEndpoint]:
    """The completion endpoints by the path after ``BASE/``."""
    chat = CompletionEndpoint(gateway, Format.CHAT_COMPLETIONS)
    anthropic = CompletionEndpoint(gateway, Format.ANTHROPIC)
    count = CompletionEndpoint(gateway, Format.ANTHROPIC, count=True)
    return {
        "chat/completions": chat,
        "responses": CompletionEndpoint(gateway, Format.RESPONSES),
        "anthropic/messages": anthropic,
        "anthropic/v1/messages": anthropic,
        "anthropic/v1/messages/count_tokens": count,
        "anthropic/messages/count_tokens": count,
    }


def routes(gateway: Gateway, completion: Mapping[str, CompletionEndpoint]) -> list[Route]:
    return [
        *(Route(f"{BASE}/{suffix}", app, methods=["POST"]) for suffix, app in completion.items()),
        Route(BASE + "/models", models_endpoint(gateway), methods=["GET"]),
    ]
