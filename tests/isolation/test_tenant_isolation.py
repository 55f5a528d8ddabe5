"""Tenant isolation over every route: a principal of workspace alpha never reads or touches
beta's objects, audit rows or usage (issue 8, section 6).

Two principals of alpha are tried: `alice`, a member of alpha holding the `admin` role, and
`bob`, no member but with a role allowing everything in alpha.  The routes come from the app
itself, so a route added without a case in ``cases.py`` fails here.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.isolation.cases import CASES, ME, Case
from tests.isolation.conftest import World
from tests.isolation.routes import ROUTES, error_code
from tests.isolation.world import KEYS, MARK, A, Call, send, snapshot

pytestmark = pytest.mark.asyncio(loop_scope="package")

PRINCIPALS = ("alice", "bob")


def as_principal(call: Call, user: str) -> Call:
    return Call(call.method, call.path.replace(ME, user), call.body, call.if_match)


async def test_the_app_and_openapi_list_the_same_routes(world: World) -> None:
    """The routes under test are exactly those /openapi.json of the running server describes."""
    async with world.http.get(world.proc.url + "/openapi.json") as resp:
        paths = (await resp.json())["paths"]
    described = sorted((p, m.upper()) for p, ops in paths.items() for m in ops
                       if p.startswith("/v1/") and not p.startswith("/v1/completion/"))
    assert described == ROUTES and len(ROUTES) == 40


async def test_every_route_has_an_isolation_case() -> None:
    """No case is stale: each names a mounted route (the reverse is checked by the test below)."""
    assert sorted(CASES) == ROUTES


@pytest.mark.parametrize("user", PRINCIPALS)
@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for p, m in ROUTES])
async def test_a_principal_of_alpha_never_reaches_beta(world: World, route: tuple[str, str], user: str) -> None:
    """Allowed in alpha, the same 403 on beta's and on missing objects, nothing of beta shown or changed."""
    case: Case | None = CASES.get(route)
    assert case is not None, f"{route} has no isolation case: add one to tests/isolation/cases.py"
    token, base = world.token(user), world.proc.url
    before = await snapshot(world.http, base) if case.writes else None
    if case.control is not None:
        status, text = await send(world.http, base, as_principal(case.control, user), token)
        assert status == case.control_status, text
        assert MARK not in text
        assert case.check is None or case.check(orjson.loads(text)), text
    answers = [await send(world.http, base, as_principal(call, user), token) for call in case.attacks]
    assert all((status, error_code(text)) == (403, "permission_denied") for status, text in answers), answers
    assert not any(MARK in text for _, text in answers)
    if before is not None:
        assert await snapshot(world.http, base) == before


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for p, m in ROUTES])
async def test_an_api_key_is_no_management_credential(world: World, route: tuple[str, str]) -> None:
    """Alpha's completion key gets a 401 on every management, audit and usage route."""
    case = CASES[route]
    call: Any = case.attacks[0] if case.attacks else case.control
    status, text = await send(world.http, world.proc.url, as_principal(call, "alice"), KEYS[A])
    assert (status, error_code(text)) == (401, "invalid_api_key"), text
    assert MARK not in text
