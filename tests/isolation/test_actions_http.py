"""Every ``<module>:<op>`` action allowed and denied over HTTP, on a route that checks it.

For each action, `may:ACTION` holds a role allowing just that action and `may-not:ACTION` one
allowing everything but it (deny overrides allow).  The request is the isolation case's
control in alpha (or, for roles and users, the same kind of harmless request): an existing name
on create, a stale If-Match on update and delete, so an allowed call proves authorization
passed (200, 409 or 412) without changing anything.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.isolation.cases import CASES, STALE, Case
from tests.isolation.conftest import World
from tests.isolation.routes import ROUTES, error_code
from tests.isolation.world import A, B, Call, may, may_not, send
from vmx_core.security.policies import ACTIONS

pytestmark = pytest.mark.asyncio(loop_scope="package")

_OPS = {("collection", "GET"): "list", ("collection", "POST"): "create", ("item", "GET"): "get",
        ("item", "PUT"): "update", ("item", "DELETE"): "delete"}
_STATEMENTS = {"statements": [{"effect": "allow", "actions": ["*"], "resources": ["*"]}]}
#: Roles and users have no control in the isolation cases (no principal of alpha may touch them).
_GLOBAL: dict[tuple[str, str], Case] = {
    ("/v1/role", "GET"): Case((), Call("GET", "/v1/role")),
    ("/v1/role", "POST"): Case((), Call("POST", "/v1/role", {"name": "alpha-admin", **_STATEMENTS}), 409),
    ("/v1/role/{name}", "GET"): Case((), Call("GET", "/v1/role/alpha-admin")),
    ("/v1/role/{name}", "PUT"): Case((), Call("PUT", "/v1/role/alpha-admin", _STATEMENTS, STALE), 412),
    ("/v1/role/{name}", "DELETE"): Case((), Call("DELETE", "/v1/role/alpha-admin", if_match=STALE), 412),
    ("/v1/user", "GET"): Case((), Call("GET", "/v1/user")),
    ("/v1/user", "POST"): Case((), Call("POST", "/v1/user", {"name": "zed", "roles": []}), 409),
    ("/v1/user/{name}", "GET"): Case((), Call("GET", "/v1/user/zed")),
    ("/v1/user/{name}", "PUT"): Case((), Call("PUT", "/v1/user/zed", {"roles": []}, STALE), 412),
    ("/v1/user/{name}", "DELETE"): Case((), Call("DELETE", "/v1/user/zed", if_match=STALE), 412),
}


def action_of(path: str, method: str) -> str:
    """The action a route checks (docs/security.md, the management API table)."""
    module = path.split("/")[2]
    if module in ("pool-definition", "request-audit", "request-usage"):
        op = {"pool-definition": {"GET": "get", "PUT": "update"}, "request-audit": {"GET": "list"},
              "request-usage": {"POST": "query"}}[module][method]
        return f"{module}:{op}"
    return f"{module}:{_OPS[('item' if path.endswith('{name}') else 'collection', method)]}"


#: One route per action (the first in route order).
ROUTE_OF: dict[str, tuple[str, str]] = {}
for _route in ROUTES:
    ROUTE_OF.setdefault(action_of(*_route), _route)


def request_for(route: tuple[str, str]) -> Case:
    case = _GLOBAL.get(route) or CASES[route]
    assert case.control is not None, route
    return case


async def test_every_action_is_checked_by_some_route() -> None:
    """The routes check exactly the actions of the policy vocabulary, every one of them."""
    assert sorted(ROUTE_OF) == sorted(ACTIONS) and len(ACTIONS) == 39


@pytest.mark.parametrize("action", ACTIONS)
async def test_an_action_is_allowed_and_denied_over_http(world: World, action: str) -> None:
    """`may:ACTION` passes authorization on its route and `may-not:ACTION` is refused there."""
    case = request_for(ROUTE_OF[action])
    assert case.control is not None
    allowed = await send(world.http, world.proc.url, case.control, world.token(may(action)))
    denied = await send(world.http, world.proc.url, case.control, world.token(may_not(action)))
    assert allowed[0] == case.control_status, allowed
    if action == "workspace:list":  # a filter, not a refusal
        names: Any = [[w["name"] for w in orjson.loads(text)["data"]] for _, text in (allowed, denied)]
        assert names == [[A, B], []] and denied[0] == 200
    else:
        assert (denied[0], error_code(denied[1])) == (403, "permission_denied"), denied
        assert action in orjson.loads(denied[1])["error"]["message"]
