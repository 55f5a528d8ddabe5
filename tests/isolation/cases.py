"""How each management, audit and usage route is tried by a principal of `alpha` against `beta`.

Every route the server mounts under ``/v1/`` (besides the completion endpoints) must have an
entry here: the isolation test is parametrized by the mounted routes, so a new route without a
case fails it.  A case has

- ``attacks`` on beta: the first names beta's real object, the others a missing object or
  workspace; every one must be a 403 ``permission_denied`` (the same answer whether the target
  exists or not, so nothing is learnt about beta);
- a ``control``: the same request in alpha, which the principal is allowed to make (writes are
  made harmless with an existing name or a stale ``If-Match``, so the answer proves
  authorization passed without changing anything);
- ``check``: what the control's answer must hold beyond not mentioning beta.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import frozen

from tests.isolation.world import AUDIT_ROWS, NOWHERE, WINDOW, A, B, Call

STALE = '"999999"'
ME = "{me}"  # replaced by the caller's user id


@frozen
class Case:
    attacks: tuple[Call, ...]
    control: Call | None = None
    control_status: int = 200
    check: Callable[[Any], bool] | None = None

    @property
    def writes(self) -> bool:
        return any(c.method != "GET" for c in self.attacks) and not self.attacks[0].path.startswith(
            "/v1/request-usage/")


_SOME_ID = "00000000-0000-4000-8000-000000000000"


def _only_alpha_listed(body: Any) -> bool:
    return [w["name"] for w in body["data"]] == [A]


def _only_alpha_rows(body: Any) -> bool:
    return len(body["data"]) == AUDIT_ROWS and {r["workspace"] for r in body["data"]} == {A}


def _only_alpha_usage(body: Any) -> bool:
    return sum(p["requests"] for p in body["data"]) == AUDIT_ROWS


def _objects(kind: str, name: str, body: dict[str, Any], scope: tuple[str, ...]) -> dict[tuple[str, str], Case]:
    """The five routes of a kind: list, create, get, replace, delete."""
    route = f"/v1/{kind}" + "".join(f"/{{{p}}}" for p in scope)

    def at(ws: str) -> str:
        return f"/v1/{kind}/{ws}" + ("/prod" if len(scope) == 2 else "")

    create = {"name": "new-one", **body}
    return {
        (route, "GET"): Case((Call("GET", at(B)), Call("GET", at(NOWHERE))), Call("GET", at(A))),
        (route, "POST"): Case((Call("POST", at(B), create), Call("POST", at(NOWHERE), create)),
                              Call("POST", at(A), {**body, "name": name}), 409),
        (route + "/{name}", "GET"): Case((Call("GET", f"{at(B)}/{name}"), Call("GET", f"{at(B)}/missing")),
                                         Call("GET", f"{at(A)}/{name}")),
        (route + "/{name}", "PUT"): Case((Call("PUT", f"{at(B)}/{name}", body), Call("PUT", f"{at(B)}/missing", body)),
                                         Call("PUT", f"{at(A)}/{name}", body, STALE), 412),
        (route + "/{name}", "DELETE"): Case((Call("DELETE", f"{at(B)}/{name}"), Call("DELETE", f"{at(B)}/missing")),
                                            Call("DELETE", f"{at(A)}/{name}", if_match=STALE), 412),
    }


def _globals(kind: str, name: str, body: dict[str, Any], own: str) -> dict[tuple[str, str], Case]:
    """Roles and users belong to no workspace: a caller of alpha may not touch them at all
    (granting itself beta would be the way out)."""
    route = f"/v1/{kind}"
    return {
        (route, "GET"): Case((Call("GET", route),)),
        (route, "POST"): Case((Call("POST", route, {"name": "escape", **body}),)),
        (route + "/{name}", "GET"): Case((Call("GET", f"{route}/{name}"), Call("GET", f"{route}/missing"))),
        (route + "/{name}", "PUT"): Case((Call("PUT", f"{route}/{own}", body), Call("PUT", f"{route}/missing", body))),
        (route + "/{name}", "DELETE"): Case((Call("DELETE", f"{route}/{name}"), Call("DELETE", f"{route}/missing"))),
    }


_ALLOW_ALL = {"statements": [{"effect": "allow", "actions": ["*"], "resources": ["*"]}]}
_DESCRIBED = {"description": "changed by a caller of alpha"}
_POOLS = {"pools": [{"name": "p", "rank": 1, "min_reservation": 0, "max_reservation": 100, "resources": ["chat"]}]}
_USAGE = {"dimensions": ["resource"], "filter": WINDOW}

CASES: dict[tuple[str, str], Case] = {
    ("/v1/workspace", "GET"): Case((), Call("GET", "/v1/workspace"), check=_only_alpha_listed),
    ("/v1/workspace", "POST"): Case((Call("POST", "/v1/workspace", {"name": B}),
                                     Call("POST", "/v1/workspace", {"name": NOWHERE})),
                                    Call("POST", "/v1/workspace", {"name": A}), 409),
    ("/v1/workspace/{name}", "GET"): Case((Call("GET", f"/v1/workspace/{B}"), Call("GET", f"/v1/workspace/{NOWHERE}")),
                                          Call("GET", f"/v1/workspace/{A}")),
    ("/v1/workspace/{name}", "PUT"): Case((Call("PUT", f"/v1/workspace/{B}", _DESCRIBED),
                                           Call("PUT", f"/v1/workspace/{NOWHERE}", _DESCRIBED)),
                                          Call("PUT", f"/v1/workspace/{A}", _DESCRIBED, STALE), 412),
    ("/v1/workspace/{name}", "DELETE"): Case((Call("DELETE", f"/v1/workspace/{B}"),
                                              Call("DELETE", f"/v1/workspace/{NOWHERE}")),
                                             Call("DELETE", f"/v1/workspace/{A}", if_match=STALE), 412),
    **_objects("environment", "prod", _DESCRIBED, ("workspace",)),
    **_objects("ai-connection", "m", {"provider": "mock", **_DESCRIBED}, ("workspace", "environment")),
    **_objects("ai-resource", "chat", {"model": {"connection": "m", "model": "mock-1"}, **_DESCRIBED},
               ("workspace", "environment")),
    **_objects("api-key", "app", {"resources": ["*"], **_DESCRIBED}, ("workspace", "environment")),
    ("/v1/pool-definition/{workspace}/{environment}", "GET"): Case(
        (Call("GET", f"/v1/pool-definition/{B}/prod"), Call("GET", f"/v1/pool-definition/{NOWHERE}/prod")),
        Call("GET", f"/v1/pool-definition/{A}/prod")),
    ("/v1/pool-definition/{workspace}/{environment}", "PUT"): Case(
        (Call("PUT", f"/v1/pool-definition/{B}/prod", _POOLS), Call("PUT", f"/v1/pool-definition/{NOWHERE}/prod", _POOLS)),
        Call("PUT", f"/v1/pool-definition/{A}/prod", _POOLS, STALE), 412),
    **_globals("role", "alpha-admin", _ALLOW_ALL, "alpha-admin"),
    **_globals("user", "zed", {"roles": ["admin"]}, ME),
    ("/v1/request-audit/{workspace}/{environment}", "GET"): Case(
        (Call("GET", f"/v1/request-audit/{B}/prod"), Call("GET", f"/v1/request-audit/{NOWHERE}/prod")),
        Call("GET", f"/v1/request-audit/{A}/prod?workspace={B}&limit=1000"), check=_only_alpha_rows),
    ("/v1/request-audit/{workspace}/{environment}/{id}/payload", "GET"): Case(
        (Call("GET", f"/v1/request-audit/{B}/prod/{_SOME_ID}/payload"),
         Call("GET", f"/v1/request-audit/{NOWHERE}/prod/{_SOME_ID}/payload")),
        # Payloads are off in this world: an alpha caller passes authorization and finds none.
        Call("GET", f"/v1/request-audit/{A}/prod/{_SOME_ID}/payload"), 404),
    ("/v1/request-usage/{workspace}/{environment}", "POST"): Case(
        (Call("POST", f"/v1/request-usage/{B}/prod", _USAGE), Call("POST", f"/v1/request-usage/{NOWHERE}/prod", _USAGE)),
        Call("POST", f"/v1/request-usage/{A}/prod", _USAGE), check=_only_alpha_usage),
}
