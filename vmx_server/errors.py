"""HTTP error responses in the client's dialect (DESIGN §6)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Send

from vmx_core.errors import InvalidRequest, NotFound, RequestError
from vmx_core.wire.errors import body_for
from vmx_server.streaming import send_whole


def error_response(err: RequestError, dialect: str) -> Response:
    headers = dict(err.headers)
    return Response(body_for(err, dialect), status_code=err.status, headers=headers, media_type="application/json")


async def send_error(send: Send, err: RequestError, dialect: str) -> None:
    """``error_response`` for the raw ASGI endpoints."""
    await send_whole(send, err.status, err.headers, body_for(err, dialect))


def dialect_for_path(path: str) -> str:
    return "anthropic" if "/anthropic/" in path or path.endswith("/anthropic") else "openai"


class MethodNotAllowed(InvalidRequest):
    status = 405
    openai_code = "method_not_allowed"


def not_found(path: str) -> Response:
    return error_response(NotFound(f"no route for {path}"), dialect_for_path(path))
