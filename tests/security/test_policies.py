"""Role policies (DESIGN §12): anchored globs, deny overrides allow, the seeded roles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.config.models import PolicyStatement as Statement
from vmx_core.errors import PermissionDenied
from vmx_core.security.policies import ACTIONS, SEEDED_ROLES, evaluate, glob, matches, resource_name
from vmx_core.security.principal import Principal, authorize

RES = resource_name("acme", "prod", "ai-resource", "chat")


def test_globs_are_anchored() -> None:
    """`workspace:prod` does not match `workspace:production`, nor `get` `ai-connection:get`."""
    assert glob("workspace:prod").fullmatch("workspace:prod")
    assert not glob("workspace:prod").fullmatch("workspace:production")
    assert not glob("get").fullmatch("ai-connection:get")
    assert glob("*:get").fullmatch("ai-connection:get")
    assert glob("workspace:acme:*").fullmatch("workspace:acme:environment:prod:ai-resource:chat")
    assert glob("role:??").fullmatch("role:ab") and not glob("role:??").fullmatch("role:abc")
    assert glob("a.b[c]").fullmatch("a.b[c]") and not glob("a.b[c]").fullmatch("aXbc")


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_can_be_allowed_and_denied(action: str) -> None:
    """A statement naming just this action allows it and nothing else; a deny on it beats `*`."""
    only = {"r": [Statement("allow", [action], ["*"])]}
    assert evaluate(only, action, RES).allowed
    assert not any(evaluate(only, other, RES).allowed for other in ACTIONS if other != action)
    denied = {"r": [Statement("allow", ["*"], ["*"]), Statement("deny", [action], ["*"])]}
    assert not evaluate(denied, action, RES).allowed
    assert all(evaluate(denied, other, RES).allowed for other in ACTIONS if other != action)


def test_nothing_matching_is_denied() -> None:
    """With no matching statement, or no roles at all, the answer is no."""
    assert not evaluate({}, "ai-resource:get", RES).allowed
    assert not evaluate({"r": [Statement("allow", ["ai-resource:get"], ["workspace:other:*"])]},
                        "ai-resource:get", RES).allowed


def test_seeded_roles() -> None:
    """admin may do anything; read-only only reads; power-user all but user/role changes."""
    for action in ACTIONS:
        assert evaluate({"admin": SEEDED_ROLES["admin"]}, action, RES).allowed
        reads = action.endswith((":get", ":list")) or action == "request-usage:query"
        assert evaluate({"read-only": SEEDED_ROLES["read-only"]}, action, RES).allowed == reads
        user_admin = action.split(":")[0] in ("user", "role") and action.split(":")[1] in ("create", "update", "delete")
        assert evaluate({"power-user": SEEDED_ROLES["power-user"]}, action, RES).allowed == (not user_admin)


def test_workspace_membership_limits_a_principal() -> None:
    """A member of `acme` is refused in `other` and on global objects even as admin."""
    member = Principal("alice", "oidc", frozenset({"admin"}), frozenset({"acme"}))
    authorize(member, {}, "ai-resource:get", RES, "acme")
    with pytest.raises(PermissionDenied, match="outside your workspaces"):
        authorize(member, {}, "ai-resource:get", resource_name("other", "prod", "ai-resource", "x"), "other")
    with pytest.raises(PermissionDenied):
        authorize(member, {}, "role:list", "role", None)


PATTERN = st.lists(st.sampled_from(["*", "?", "a", "b", ":", "ai-resource", "get", "workspace"]), max_size=5).map("".join)
STATEMENT = st.builds(Statement, st.sampled_from(["allow", "deny"]), st.lists(PATTERN, min_size=1, max_size=3),
                      st.lists(PATTERN, min_size=1, max_size=3))
ROLES = st.dictionaries(st.sampled_from(["r1", "r2", "r3"]), st.lists(STATEMENT, max_size=4), max_size=3)
WORD = st.lists(st.sampled_from(["a", "b", ":", "ai-resource", "get", "workspace", "x"]), max_size=6).map("".join)


@settings(max_examples=500, deadline=None)
@given(ROLES, WORD, WORD)
def test_deny_always_wins_whatever_the_order(roles: dict[str, list[Statement]], action: str, resource: str) -> None:
    """Allowed exactly when some statement allows and none denies, for any order of roles and statements."""
    flat = [s for stmts in roles.values() for s in stmts if matches(s, action, resource)]
    expected = any(s.effect == "allow" for s in flat) and not any(s.effect == "deny" for s in flat)
    assert evaluate(roles, action, resource).allowed == expected
    shuffled = {name: list(reversed(stmts)) for name, stmts in reversed(list(roles.items()))}
    assert evaluate(shuffled, action, resource).allowed == expected
    if any(s.effect == "deny" for s in flat):
        boosted = {**roles, "extra": [Statement("allow", ["*"], ["*"])]}
        assert not evaluate(boosted, action, resource).allowed
