"""``/ui/``: the usage dashboard, static files shipped in the package (``vmx_server/ui``).

The page holds no data: it reads the usage API with the admin token the user enters, so the
files themselves are served without one.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles


def routes() -> list[BaseRoute]:
    async def to_slash(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=308)

    return [
        Route("/ui", to_slash, methods=["GET", "HEAD"]),
        Mount("/ui", app=StaticFiles(packages=[("vmx_server", "ui")], html=True), name="ui"),
    ]
