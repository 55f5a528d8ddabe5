"""``GET /v1/request-audit/{ws}/{env}`` (and ``.../{id}/payload``) and ``POST /v1/request-usage/{ws}/{env}``.

When ``VMX_ADMIN_TOKEN`` or ``management.oidc`` is set, the caller must present one, and its
roles must allow ``request-audit:list`` / ``request-usage:query`` on
``workspace:W:environment:E:request-audit`` / ``...:request-usage`` (a workspace member only in
its own workspaces).  With neither set, these read-only APIs stay open, as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vmx_core import Gateway
from vmx_core.audit.api import audit_page, find_store, usage_report
from vmx_core.audit.query import AuditQuery, UsageQuery
from vmx_core.errors import AuditStoreError, InvalidRequest, NotFound, RequestError
from vmx_core.security.admin import AdminAuth
from vmx_core.security.policies import resource_name
from vmx_core.security.principal import authorize
from vmx_server.errors import error_response
from vmx_server.streaming import read_body

Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(gateway: Gateway, auth: AdminAuth, action: str, fn: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            config = gateway.config
            if auth.configured(config):
                who = await auth.principal(request.headers.get("authorization"), config)
                ws, env = request.path_params["workspace"], request.path_params["environment"]
                roles = {name: list(role.statements) for name, role in config.roles.items()}
                authorize(who, roles, action, resource_name(ws, env, action.split(":")[0]), ws)
            return await fn(request)
        except RequestError as err:
            return error_response(err, "openai")
        except AuditStoreError as exc:
            err = RequestError(str(exc))
            err.status = 503
            return error_response(err, "openai")

    return endpoint


def routes(gateway: Gateway, auth: AdminAuth | None = None) -> list[Route]:
    auth = auth or AdminAuth()

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
            body = orjson.loads(await read_body(request, gateway.config.limits.max_body_bytes) or b"{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest("the body is not valid JSON", param="$") from None
        query = UsageQuery.from_body(ws, env, body)
        return JSONResponse(await usage_report(find_store(gateway), query))

    return [
        Route("/v1/request-audit/{workspace}/{environment}", _guarded(gateway, auth, "request-audit:list", audit),
              methods=["GET"]),
        # A stored payload is part of the audit record: the same permission as listing it.
        Route("/v1/request-audit/{workspace}/{environment}/{id}/payload",
              _guarded(gateway, auth, "request-audit:list", payload), methods=["GET"]),
        Route("/v1/request-usage/{workspace}/{environment}", _guarded(gateway, auth, "request-usage:query", usage),
              methods=["POST"]),
    ]
