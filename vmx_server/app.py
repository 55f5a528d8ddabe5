"""``create_app(gateway)``: the Starlette application around a Gateway."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from vmx_core import Gateway, tokens
from vmx_core.errors import NotFound, RequestError, VmxError
from vmx_core.plugins import collect
from vmx_core.security.admin import AdminAuth
from vmx_core.store.manage import Management
from vmx_core.store.service import ConfigService
from vmx_server.errors import MethodNotAllowed, dialect_for_path, error_response, send_error
from vmx_server.routes import audit, completion, meta, ui
from vmx_server.routes.management import ManagementRoutes

log = structlog.get_logger("vmx.server")

#: The young generation's collection threshold of a settled heap (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


def create_app(
    gateway: Gateway, config_path: str | os.PathLike[str] | None = None, *, settle_heap: bool = False
) -> ASGIApp:
    """The ASGI app.  Its lifespan starts and stops ``gateway`` and its config store (and, with
    ``storage.config: file`` and ``config_path``, reloads that file on SIGHUP); plugins may add
    routes (``vmx_register_routes``) and wrap the app (``vmx_asgi_wrapper``).

    ``settle_heap`` (``vmx serve`` and ``vmx_server.asgi``, processes of their own): once started,
    load the token tables and move everything allocated so far out of the garbage collector's
    way (``gc.freeze``).  That start-up heap (modules, the rule parser's grammar, the tables) is
    never freed, yet every full collection walked all of it: ~35 ms each, ~3.5 µs per request
    under load (issue 9).  The young generation's threshold is raised too
    (:data:`YOUNG_THRESHOLD`): the objects of the requests in flight alone outnumber the default
    700, so a collection ran every few requests only to find them all alive (~0.1 ms each,
    ~5 µs per request); a request leaves no reference cycle behind, so the count of
    allocations rarely nears the new threshold.  Process-wide, so never the default for an
    embedding application."""
    state: dict[str, bool] = {"draining": False}
    auth = AdminAuth()
    management = ManagementRoutes(gateway, auth)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        service = ConfigService.for_gateway(gateway)
        await service.start()
        management.management = Management(service)
        hup = config_path is not None and gateway.config.storage.config == "file" and _install_sighup(service, config_path)
        if settle_heap:
            tokens.preload()
            gc.collect()
            gc.freeze()
            gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        try:
            yield
        finally:
            state["draining"] = True
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await service.aclose()
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

    endpoints = completion.endpoints(gateway)
    routes: list[Any] = [
        *completion.routes(gateway, endpoints), *meta.routes(gateway, state), *audit.routes(gateway, auth),
        *management.routes(), *ui.routes(),
    ]
    routes.extend(collect(gateway.plugins.hook.vmx_register_routes()))
    app: ASGIApp = VmxApp(
        endpoints,
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


class VmxApp(Starlette):
    """Starlette, with the completion POSTs -- the hot path -- dispatched by a dictionary
    lookup straight to their raw ASGI endpoints instead of through the middleware stack and
    the router's regex scan (issue 9).  Everything else, the same routes' other methods
    included (405), goes through Starlette."""

    def __init__(self, endpoints: dict[str, completion.CompletionEndpoint], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.completion = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.startswith(completion.PREFIX):
                ws, _, rest = path[len(completion.PREFIX):].partition("/")
                env, _, suffix = rest.partition("/")
                endpoint = self.completion.get(suffix)
                if endpoint is not None and ws and env:
                    scope["app"] = self
                    scope["path_params"] = {"workspace": ws, "environment": env}
                    try:
                        await endpoint(scope, receive, send)
                    except Exception as exc:
                        await _internal_error(send, path, exc)
                    return
        await super().__call__(scope, receive, send)


async def _internal_error(send: Send, path: str, exc: Exception) -> None:
    # A bug, not an upstream or client problem: log the type (never request data).
    log.error("unhandled_error", path=path, error=type(exc).__name__, exc_info=exc)
    try:
        await send_error(send, RequestError("internal gateway error"), dialect_for_path(path))
    except Exception:  # the answer had started: the server closes the connection
        raise exc from None


def _install_sighup(service: ConfigService, path: str | os.PathLike[str]) -> bool:
    """SIGHUP re-reads the file and swaps it in like any reload; a bad file is logged and
    the running config kept."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            await service.reload_file(path)
            log.info("config_reloaded", source=str(path))
        except VmxError as exc:
            log.error("config_reload_failed", source=str(path), error=str(exc))

    def on_hup() -> None:
        task = loop.create_task(reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        return False
    return True
