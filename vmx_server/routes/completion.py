"""The completion endpoints under ``/v1/completion/{workspace}/{environment}`` (DESIGN §2)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from vmx_core import ClientRequest, Completion, Format, Gateway
from vmx_core.errors import RequestError
from vmx_server.errors import error_response
from vmx_server.streaming import ClientDisconnected, cancel_on_disconnect, read_body

log = structlog.get_logger("vmx.server")

BASE = "/v1/completion/{workspace}/{environment}"


def api_key_of(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key") or None


def _source_ip(request: Request) -> str | None:
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else None


def completion_endpoint(gateway: Gateway, fmt: Format, *, count: bool = False) -> Callable[[Request], Awaitable[Response]]:
    dialect = fmt.dialect
    handle = gateway.count_tokens if count else gateway.handle

    async def endpoint(request: Request) -> Response:
        ws = request.path_params["workspace"]
        env = request.path_params["environment"]
        api_key = api_key_of(request)
        try:
            # Before reading the body: an unauthenticated caller learns nothing, not even
            # whether its body was too large.
            gateway.authenticate(api_key, ws, env)
            body = await read_body(request, gateway.config.limits.max_body_bytes)
        except RequestError as err:
            refused = ClientRequest(fmt, ws, env, b"", api_key, request.headers, _source_ip(request))
            return error_response(gateway.reject(refused, err), dialect)
        try:
            call = ClientRequest(fmt, ws, env, body, api_key, request.headers, _source_ip(request))
            reply = await cancel_on_disconnect(request, handle(call))
        except RequestError as err:
            return error_response(err, dialect)
        except ClientDisconnected:
            return Response(status_code=499)
        if isinstance(reply, Completion):
            return Response(reply.body, status_code=reply.status, headers=dict(reply.headers), media_type="application/json")
        headers = {**reply.headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(reply.frames, status_code=reply.status, headers=headers, media_type="text/event-stream")

    return endpoint


def models_endpoint(gateway: Gateway) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        ws = request.path_params["workspace"]
        env = request.path_params["environment"]
        try:
            names = gateway.models(ws, env, api_key=api_key_of(request) or "")
        except RequestError as err:
            return error_response(err, "openai")
        data = [{"id": n, "object": "model", "created": 0, "owned_by": f"{ws}/{env}"} for n in names]
        return JSONResponse({"object": "list", "data": data})

    return endpoint


def routes(gateway: Gateway) -> list[Route]:
    chat = completion_endpoint(gateway, Format.CHAT_COMPLETIONS)
    responses = completion_endpoint(gateway, Format.RESPONSES)
    anthropic = completion_endpoint(gateway, Format.ANTHROPIC)
    count = completion_endpoint(gateway, Format.ANTHROPIC, count=True)
    return [
        Route(BASE + "/chat/completions", chat, methods=["POST"]),
        Route(BASE + "/responses", responses, methods=["POST"]),
        Route(BASE + "/anthropic/messages", anthropic, methods=["POST"]),
        Route(BASE + "/anthropic/v1/messages", anthropic, methods=["POST"]),
        Route(BASE + "/anthropic/v1/messages/count_tokens", count, methods=["POST"]),
        Route(BASE + "/anthropic/messages/count_tokens", count, methods=["POST"]),
        Route(BASE + "/models", models_endpoint(gateway), methods=["GET"]),
    ]
