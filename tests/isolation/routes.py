"""The routes under test, read from the app itself (so a new route shows up here by itself)."""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.routing import Route

from tests.conftest import base_config
from vmx_core import Gateway
from vmx_core.config import config_from_dict
from vmx_server.app import create_app
from vmx_server.routes.completion import BASE


def _mounted() -> list[tuple[str, str]]:
    app = create_app(Gateway.from_config(config_from_dict(base_config(), environ={})))
    assert isinstance(app, Starlette)
    return sorted((r.path, m) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD")


MOUNTED = _mounted()
#: Every (path, method) the app serves under /v1/ besides the completion endpoints: the
#: management, audit and usage APIs.
ROUTES = [(p, m) for p, m in MOUNTED if p.startswith("/v1/") and not p.startswith(BASE.split("{")[0])]
#: The completion endpoints, as (path after the base, method).
COMPLETION_ROUTES = sorted((p.removeprefix(BASE), m) for p, m in MOUNTED if p.startswith(BASE))


def error_code(text: str) -> str | None:
    """The OpenAI-dialect error code of an answer, if it is one."""
    try:
        return str(orjson.loads(text)["error"]["code"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
