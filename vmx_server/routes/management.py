"""The management API under ``/v1/`` (VM-X's paths, DESIGN §2): thin HTTP over
:class:`vmx_core.store.manage.Management`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vmx_core import Gateway
from vmx_core.errors import (
    AuthenticationFailed,
    ConfigStoreError,
    InvalidRequest,
    RequestError,
)
from vmx_core.security.admin import AdminAuth
from vmx_core.security.principal import Principal
from vmx_core.store.manage import Management
from vmx_server.errors import error_response
from vmx_server.streaming import read_body

Endpoint = Callable[[Request], Awaitable[Response]]
#: kind -> the path parameters that scope it, in URL order.
SCOPED = {"workspace": (), "environment": ("workspace",), "role": (), "user": (),
          "ai-connection": ("workspace", "environment"), "ai-resource": ("workspace", "environment"),
          "api-key": ("workspace", "environment")}


def _json(body: Any, status: int = 200, version: int | None = None) -> Response:
    headers = {"etag": f'"{version}"'} if version is not None else None
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


#: An ETag this API answers (``"N"``, also weak ``W/"N"``), or ``*``.
ETAG = re.compile(r'^(?:W/)?"(\d{1,18})"$')


def if_match(request: Request) -> int | None:
    """The version ``If-Match`` names; a malformed header is a 400 (a client error, not a
    stale version)."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    m = ETAG.match(raw.strip())
    if m is None:
        raise InvalidRequest('If-Match must be an ETag this API returned ("N") or *', param="If-Match")
    return int(m.group(1))


async def _body(request: Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON", param="$") from None


class ManagementRoutes:
    """Holds what the lifespan opens (the management service), read at request time."""

    def __init__(self, gateway: Gateway, auth: AdminAuth) -> None:
        self.gateway = gateway
        self.auth = auth
        self.management: Management | None = None

    async def read(self, request: Request) -> Any:
        """The JSON body, within ``limits.max_body_bytes`` (413 above it)."""
        return await _body(request, self.gateway.config.limits.max_body_bytes)

    async def principal(self, request: Request) -> Principal:
        if not self.auth.configured(self.gateway.config):
            raise AuthenticationFailed("the management API is disabled: set VMX_ADMIN_TOKEN or management.oidc")
        return await self.auth.principal(request.headers.get("authorization"), self.gateway.config)

    def guarded(self, fn: Callable[[Management, Principal, Request], Awaitable[Response]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                who = await self.principal(request)
                if self.management is None:
                    raise RequestError("the management API is starting")
                return await fn(self.management, who, request)
            except RequestError as err:
                return error_response(err, "openai")
            except ConfigStoreError as exc:
                err = RequestError(str(exc))
                err.status = 503
                return error_response(err, "openai")

        return endpoint

    def routes(self) -> list[Route]:
        out: list[Route] = []
        for kind, scope in SCOPED.items():
            base = "/v1/" + kind + "".join(f"/{{{p}}}" for p in scope)
            out.append(Route(base, self.guarded(self._collection(kind, scope)), methods=["GET", "POST"]))
            out.append(Route(base + "/{name}", self.guarded(self._item(kind, scope)), methods=["GET", "PUT", "DELETE"]))
        out.append(Route("/v1/pool-definition/{workspace}/{environment}", self.guarded(self._pools),
                         methods=["GET", "PUT"]))
        return out

    @staticmethod
    def _scope(request: Request, scope: tuple[str, ...]) -> tuple[str | None, str | None]:
        p = request.path_params
        return (p.get("workspace") if "workspace" in scope else None,
                p.get("environment") if "environment" in scope else None)

    def _collection(self, kind: str, scope: tuple[str, ...]) -> Callable[[Management, Principal, Request], Awaitable[Response]]:
        async def handle(m: Management, who: Principal, request: Request) -> Response:
            ws, env = self._scope(request, scope)
            if request.method == "GET":
                return _json({"data": await m.list(who, kind, ws, env)})
            answer = await m.create(who, kind, ws, env, await self.read(request))
            return _json(answer.body, 201, answer.version)

        return handle

    def _item(self, kind: str, scope: tuple[str, ...]) -> Callable[[Management, Principal, Request], Awaitable[Response]]:
        async def handle(m: Management, who: Principal, request: Request) -> Response:
            ws, env = self._scope(request, scope)
            name = request.path_params["name"]
            if request.method == "GET":
                answer = await m.get(who, kind, ws, env, name)
                return _json(answer.body, 200, answer.version)
            if request.method == "PUT":
                answer = await m.update(who, kind, ws, env, name, await self.read(request), if_match(request))
                return _json(answer.body, 200, answer.version)
            await m.delete(who, kind, ws, env, name, if_match(request))
            return Response(status_code=204)

        return handle

    async def _pools(self, m: Management, who: Principal, request: Request) -> Response:
        ws, env = request.path_params["workspace"], request.path_params["environment"]
        if request.method == "GET":
            answer = await m.get(who, "pool-definition", ws, env, None)
        else:
            answer = await m.update(who, "pool-definition", ws, env, None, await self.read(request), if_match(request))
        return _json(answer.body, 200, answer.version)
