"""Generated policies never let a caller of workspace alpha reach another workspace's objects or
the global ones: neither a member of alpha whatever its roles say, nor a non-member whose allow
statements are confined to alpha, whatever the names of the other workspaces look like."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.config.models import PolicyStatement as Statement
from vmx_core.errors import PermissionDenied
from vmx_core.security.policies import MODULE_OPS, resource_name
from vmx_core.security.principal import Principal, authorize
from vmx_core.store.manage import object_key, policy_target
from vmx_core.store.objects import KINDS

A = "alpha"
Target = tuple[str, str, str | None]  # (action, resource, workspace)

#: Valid names, with those an unanchored or careless pattern would confuse with alpha.
NAME = st.one_of(st.sampled_from(["alpha-evil", "alpha.beta", "alphabet", "alpha_", "Alpha", "alpha0", "prod"]),
                 st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,12}", fullmatch=True))
OTHER = NAME.filter(lambda n: n != A)
GLOB = st.lists(st.sampled_from(["*", "?", ":", "alpha", "beta", "workspace", "environment", "ai-resource",
                                 "role", "user", "-", ".", "prod", "get", "list"]), max_size=6).map("".join)
#: Resource patterns that only ever name alpha or what is inside it.
IN_ALPHA = st.one_of(st.just(f"workspace:{A}"), GLOB.map(lambda g: f"workspace:{A}:{g}"))
ANY_STATEMENT = st.builds(Statement, st.sampled_from(["allow", "deny"]), st.lists(GLOB, min_size=1, max_size=3),
                          st.lists(GLOB, min_size=1, max_size=3))
CONFINED_ALLOW = st.builds(Statement, st.just("allow"), st.lists(GLOB, min_size=1, max_size=3),
                           st.lists(IN_ALPHA, min_size=1, max_size=3))
DENY = st.builds(Statement, st.just("deny"), st.lists(GLOB, min_size=1, max_size=3),
                 st.lists(GLOB, min_size=1, max_size=3))


GLOBAL = ("role", "user")


@st.composite
def target(draw: st.DrawFn, workspace: st.SearchStrategy[str], global_too: bool = True) -> Target:
    """Some action on some object as the API checks it: management objects (a list on its
    parent, as the API does), and the audit and usage of an environment."""
    module = draw(st.sampled_from(sorted(m for m in MODULE_OPS if global_too or m not in GLOBAL)))
    op = draw(st.sampled_from(MODULE_OPS[module]))
    ws, env, name = draw(workspace), draw(NAME), draw(NAME)
    if module in ("request-audit", "request-usage"):
        return f"{module}:{op}", resource_name(ws, env, module), ws
    if module == "workspace":
        name = ws
    key = object_key(module, ws, env, None if op == "list" and module != "workspace" else name)
    resource, where = policy_target(key)
    return f"{module}:{op}", resource, where


def refused(who: Principal, roles: dict[str, list[Statement]], t: Target) -> bool:
    try:
        authorize(who, roles, *t)
    except PermissionDenied:
        return True
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(ANY_STATEMENT, max_size=5), target(OTHER))
def test_a_member_of_alpha_never_leaves_it(statements: list[Statement], t: Target) -> None:
    """Whatever its roles allow (here plus `admin`), a member of alpha is refused outside it."""
    member = Principal("m", "oidc", frozenset({"admin", "generated"}), frozenset({A}))
    assert refused(member, {"generated": statements}, t)
    if t[2] is None:
        assert t[0].split(":")[0] in GLOBAL  # only roles and users are outside every workspace


@settings(max_examples=300, deadline=None)
@given(st.lists(CONFINED_ALLOW, min_size=1, max_size=4), st.lists(DENY, max_size=3), target(OTHER),
       target(st.just(A), global_too=False))
def test_allow_statements_confined_to_alpha_never_reach_outside(
        allows: list[Statement], denies: list[Statement], outside: Target, inside: Target) -> None:
    """Allows confined to `workspace:alpha[:...]` never reach another workspace, a role or a user."""
    # Non-vacuity: the same principal allowed everything in alpha does reach every object of alpha.
    user = Principal("u", "oidc", frozenset({"generated"}))
    assert refused(user, {"generated": allows + denies}, outside)
    everything_in_alpha = [Statement("allow", ["*"], [f"workspace:{A}", f"workspace:{A}:*"])]
    assert not refused(user, {"generated": everything_in_alpha}, inside)


def test_every_stored_kind_has_a_policy_module() -> None:
    """The generated targets cover every kind the store keeps (each is a policy module)."""
    assert set(KINDS) <= set(MODULE_OPS)
