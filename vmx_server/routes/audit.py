"""``GET /v1/request-audit/{ws}/{env}`` and ``POST /v1/request-usage/{ws}/{env}``.

Protected by ``VMX_ADMIN_TOKEN`` (``Authorization: Bearer``) when it is set; OIDC and role
policies arrive with the security work.
"""

from __future__ import annotations

import hmac
import os
import uuid
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vmx_core import Gateway
from vmx_core.audit.api import audit_page, find_store, usage_report
from vmx_core.audit.query import AuditQuery, UsageQuery
from vmx_core.errors import (
    AuditStoreError,
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    RequestError,
)
from vmx_server.errors import error_response

Endpoint = Callable[[Request], Awaitable[Response]]


def check_admin(request: Request) -> None:
    token = os.environ.get("VMX_ADMIN_TOKEN")
    if not token:
        return
    given = request.headers.get("authorization", "")
    if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())):
        raise AuthenticationFailed("an admin token is required: Authorization: Bearer $VMX_ADMIN_TOKEN")


def _guarded(fn: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            check_admin(request)
            return await fn(request)
        except RequestError as err:
            return error_response(err, "openai")
        except AuditStoreError as exc:
            err = RequestError(str(exc))
            err.status = 503
            return error_response(err, "openai")

    return endpoint


def routes(gateway: Gateway) -> list[Route]:
    async def audit(request: Request) -> Response:
        ws, env = request.path_params["workspace"], request.path_params["environment"]
        query = AuditQuery.from_params(ws, env, dict(request.query_params))
        return Response(orjson.dumps(await audit_page(find_store(gateway), query)), media_type="application/json")

    async def payload(request: Request) -> Response:
        ws, env, rid = (request.path_params[k] for k in ("workspace", "environment", "id"))
        try:
            uuid.UUID(rid)
        except ValueError:
            raise InvalidRequest("id: must be a request id (UUID)", param="id") from None
        row = await find_store(gateway).fetch_payload(ws, env, rid)
        if row is None:
            raise NotFound(f"no stored payload for request {rid} (audit.payloads may be none)")
        return Response(orjson.dumps(row), media_type="application/json")

    async def usage(request: Request) -> Response:
        ws, env = request.path_params["workspace"], request.path_params["environment"]
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest("the body is not valid JSON") from None
        query = UsageQuery.from_body(ws, env, body)
        return JSONResponse(await usage_report(find_store(gateway), query))

    return [
        Route("/v1/request-audit/{workspace}/{environment}", _guarded(audit), methods=["GET"]),
        Route("/v1/request-audit/{workspace}/{environment}/{id}/payload", _guarded(payload), methods=["GET"]),
        Route("/v1/request-usage/{workspace}/{environment}", _guarded(usage), methods=["POST"]),
    ]
