"""``create_app(gateway)``: the Starlette application around a Gateway."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from vmx_core import Gateway
from vmx_core.errors import NotFound, RequestError
from vmx_core.plugins import collect
from vmx_server.errors import MethodNotAllowed, dialect_for_path, error_response
from vmx_server.routes import audit, completion, meta, ui

log = structlog.get_logger("vmx.server")


def create_app(gateway: Gateway) -> ASGIApp:
    """The ASGI app.  Its lifespan starts and stops ``gateway``; plugins may add routes
    (``vmx_register_routes``) and wrap the app (``vmx_asgi_wrapper``)."""
    state: dict[str, bool] = {"draining": False}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            state["draining"] = True
            await gateway.aclose()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        err: RequestError
        if exc.status_code == 405:
            err = MethodNotAllowed(f"method {request.method} is not allowed on {request.url.path}")
        else:
            err = NotFound(f"no route for {request.url.path}")
        return error_response(err, dialect_for_path(request.url.path))

    async def internal_error(request: Request, exc: Exception) -> Response:
        # A bug, not an upstream or client problem: log the type (never request data).
        log.error("unhandled_error", path=request.url.path, error=type(exc).__name__, exc_info=exc)
        err = RequestError("internal gateway error")
        return error_response(err, dialect_for_path(request.url.path))

    routes: list[Any] = [
        *completion.routes(gateway), *meta.routes(gateway, state), *audit.routes(gateway), *ui.routes(),
    ]
    routes.extend(collect(gateway.plugins.hook.vmx_register_routes()))
    app: ASGIApp = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    # Each wrapper wraps the result of the previous one, so they are called one at a time.
    for impl in gateway.plugins.hook.vmx_asgi_wrapper.get_hookimpls():
        wrapped = impl.function(app=app)
        if wrapped is not None:
            app = wrapped
    return app
