"""Operational endpoints: health, readiness, plugins, the OpenAPI document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vmx_core import Gateway
from vmx_server.openapi import openapi_document


def routes(gateway: Gateway, state: dict[str, bool]) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if state.get("draining") or not gateway.started:
            return JSONResponse({"status": "draining" if state.get("draining") else "starting"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def plugins(request: Request) -> Response:
        return JSONResponse(
            {
                "plugins": [
                    {"name": p.name, "module": p.module, "version": p.version, "hooks": list(p.hooks)}
                    for p in gateway.plugins.describe()
                ],
                "providers": sorted(gateway.plugins.providers()),
            }
        )

    async def metrics(request: Request) -> Response:
        # Audit counters per sink (queued, written, spooled, replayed, queue depth).
        audit = {s.name: s.stats() for s in gateway.sinks if callable(getattr(s, "stats", None))}
        return JSONResponse({"audit": audit})

    document = openapi_document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    endpoints: list[tuple[str, Callable[[Request], Awaitable[Response]]]] = [
        ("/healthz", healthz), ("/readyz", readyz), ("/-/plugins", plugins), ("/-/metrics", metrics),
        ("/openapi.json", openapi),
    ]
    return [Route(path, fn, methods=["GET"]) for path, fn in endpoints]
