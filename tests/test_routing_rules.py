"""Routing rules (DESIGN §8): first match, traffic, splits, stickiness, blocking, both forms."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import KEY, base_config
from vmx_core import Gateway
from vmx_core.config import config_from_dict
from vmx_core.config.convert import structure
from vmx_core.config.models import RoutingRule
from vmx_core.errors import BlockedByRouting, ConfigError, UpstreamFailed, UpstreamHTTPError
from vmx_core.plugins import hookimpl
from vmx_core.routing.cel import compile_expression
from vmx_core.routing.functions import RuleContext, vmx_register_rule_functions
from vmx_core.routing.health import ConnectionHealth
from vmx_core.routing.rules import RuleFunctions, RuleSet
from vmx_core.routing.structured import compile_structured
from vmx_core.routing.values import EvalError
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway

FUNCTIONS = RuleFunctions.from_mapping(vmx_register_rule_functions())
CONTEXT = RuleContext("w", "e", "c", ConnectionHealth())


def ref(model: str) -> dict[str, Any]:
    return {"connection": "m", "model": model}


def ruleset(rules: list[dict[str, Any]]) -> RuleSet:
    parsed = [structure(r, RoutingRule) for r in rules]
    return RuleSet.compile(parsed, FUNCTIONS, "$.routing")


def route(rs: RuleSet, variables: dict[str, Any] | None = None, cid: str | None = None) -> tuple[str | None, str | None]:
    return route_many(rs, 1, variables, cid)[0]


def route_many(
    rs: RuleSet, n: int, variables: dict[str, Any] | None = None, cid: str | None = None
) -> list[tuple[str | None, str | None]]:
    async def run() -> list[tuple[str | None, str | None]]:
        out = []
        for _ in range(n):
            d = await rs.route(dict(variables or {}), FUNCTIONS, CONTEXT, cid)
            out.append((d.ref.model if d.ref else None, d.rule))
        return out

    return asyncio.run(run())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=8))
def test_first_matching_rule_wins(outcomes: list[bool]) -> None:
    """Rules are tried in order and the first whose condition holds decides."""
    rules = [{"name": f"r{i}", "when": "true" if hit else "false", "then": ref(f"m{i}")} for i, hit in enumerate(outcomes)]
    expected = next((f"m{i}" for i, hit in enumerate(outcomes) if hit), None)
    assert route(ruleset(rules))[0] == expected


def test_traffic_zero_never_and_hundred_always() -> None:
    """`traffic: 0` never takes the rule (VM-X took it always); 100 always does."""
    never = ruleset([{"name": "c", "traffic": 0, "then": ref("canary")}])
    always = ruleset([{"name": "c", "traffic": 100, "then": ref("canary")}])
    assert {m for m, _ in route_many(never, 200)} == {None}
    assert {m for m, _ in route_many(always, 200)} == {"canary"}


def test_a_traffic_roll_that_fails_falls_through_to_the_next_rule() -> None:
    """A canary not taken lets the following rules decide (cascading splits)."""
    rs = ruleset([{"name": "c", "traffic": 30, "then": ref("canary")}, {"name": "rest", "then": ref("stable")}])
    seen = [m for m, _ in route_many(rs, 4000)]
    share = seen.count("canary") / len(seen)
    assert set(seen) == {"canary", "stable"}
    assert abs(share - 0.30) < 5 * math.sqrt(0.3 * 0.7 / len(seen))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=100), min_size=2, max_size=4))
def test_split_frequencies_match_weights(weights: list[int]) -> None:
    """Over 10,000 draws each split choice's share is within 5 sigma of its weight."""
    rs = ruleset([{"name": "ab", "split": [{"weight": w, "then": ref(f"m{i}")} for i, w in enumerate(weights)]}])
    draws = 10_000
    counts = [0] * len(weights)
    for model, _ in route_many(rs, draws):
        assert model is not None
        counts[int(model[1:])] += 1
    total = sum(weights)
    for w, c in zip(weights, counts, strict=True):
        p = w / total
        assert abs(c / draws - p) <= 5 * math.sqrt(p * (1 - p) / draws) + 1e-9


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_split_and_traffic_are_sticky_per_correlation_id(cid: str) -> None:
    """The same correlation id always gets the same traffic roll and split choice."""
    rs = ruleset(
        [
            {"name": "canary", "traffic": 50, "then": ref("canary")},
            {"name": "ab", "split": [{"weight": 1, "then": ref("a")}, {"weight": 1, "then": ref("b")}]},
        ]
    )
    assert len(set(route_many(rs, 20, cid=cid))) == 1


def test_sticky_choices_still_spread_across_ids() -> None:
    """Stickiness hashes the id: different ids land on every choice in proportion."""
    rs = ruleset([{"name": "ab", "split": [{"weight": 1, "then": ref("a")}, {"weight": 1, "then": ref("b")}]}])
    seen = [route(rs, cid=f"id-{i}")[0] for i in range(2000)]
    assert 0.45 < seen.count("a") / len(seen) < 0.55


def test_block_raises_and_a_failed_traffic_roll_does_not_block() -> None:
    """`action: block` answers blocked_by_routing_condition, only when the rule is taken."""
    with pytest.raises(BlockedByRouting, match="no-secrets"):
        route(ruleset([{"name": "no-secrets", "when": 'request.last_message.contains("password")', "action": "block"}]),
              {"request": {"last_message": "my password"}})
    assert route(ruleset([{"name": "b", "traffic": 0, "action": "block"}])) == (None, None)


def test_a_rule_that_fails_to_evaluate_does_not_match() -> None:
    """A missing metadata key is an evaluation error: the rule is skipped, routing goes on."""
    rs = ruleset([{"name": "team", "when": 'metadata.team == "red"', "then": ref("red")}, {"name": "rest", "then": ref("x")}])
    assert route(rs, {"metadata": {}}) == ("x", "rest")


LEAF_OPS = {
    "eq": "{f} == {v}", "ne": "{f} != {v}", "gt": "{f} > {v}", "gte": "{f} >= {v}", "lt": "{f} < {v}",
    "lte": "{f} <= {v}", "contains": "{f}.contains({v})", "not_contains": "!{f}.contains({v})",
    "starts_with": "{f}.startsWith({v})", "ends_with": "{f}.endsWith({v})", "matches": "{f}.matches({v})",
    "in": "{f} in {v}", "not_in": "!({f} in {v})", "exists": "has({f})",
}
STRING_OPS = ["eq", "ne", "contains", "not_contains", "starts_with", "ends_with", "matches", "in", "not_in", "exists"]
INT_OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists"]


def cel_literal(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(cel_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value + '"'
    return str(value)


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        field, ops, values = "tokens.input", INT_OPS, st.integers(0, 50)
    else:
        field, ops, values = draw(st.sampled_from(["metadata.team", "request.model"])), STRING_OPS, st.sampled_from(["a", "b", "ab"])
    op = draw(st.sampled_from(ops))
    value = draw(st.lists(values, max_size=3)) if op in ("in", "not_in") else draw(values)
    return {"field": field, "op": op, "value": value}


def to_cel(node: dict[str, Any]) -> str:
    if "all" in node or "any" in node:
        kind = "all" if "all" in node else "any"
        joiner = " && " if kind == "all" else " || "
        return "(" + joiner.join(to_cel(n) for n in node[kind]) + ")"
    return "(" + LEAF_OPS[node["op"]].format(f=node["field"], v=cel_literal(node["value"])) + ")"


trees = st.recursive(leaves(), lambda inner: st.dictionaries(st.sampled_from(["all", "any"]), st.lists(inner, min_size=1, max_size=3), min_size=1, max_size=1), max_leaves=6)


def matches(fn: Any, variables: dict[str, Any]) -> bool:
    try:
        return fn(variables) is True
    except EvalError:
        return False


@settings(max_examples=400, deadline=None)
@given(trees, st.integers(0, 50), st.sampled_from(["a", "b", "ab", "ba"]), st.none() | st.sampled_from(["a", "b", "ab"]))
def test_structured_and_cel_forms_agree(tree: dict[str, Any], tokens: int, model: str, team: str | None) -> None:
    """A structured condition and its CEL spelling match exactly the same requests."""
    variables = {"tokens": {"input": tokens}, "request": {"model": model}, "metadata": {} if team is None else {"team": team}}
    structured, _ = compile_structured(tree)
    cel = compile_expression(to_cel(tree), {}, frozenset())
    assert matches(structured, variables) == matches(cel.fn, variables)


def test_exists_means_present_and_not_null() -> None:
    """`exists` is false for a missing or null field (VM-X's was always true)."""
    fn, _ = compile_structured({"field": "metadata.team", "op": "exists"})
    assert fn({"metadata": {"team": "x"}}) is True
    assert fn({"metadata": {}}) is False
    assert fn({"metadata": {"team": None}}) is False


def test_bad_rules_fail_config_loading_with_the_rule_path() -> None:
    """A syntax error, an unknown function or a bad structured op names the rule's path."""
    rules = [
        {"name": "ok", "when": "tokens.input > 10", "then": ref("x")},
        {"name": "syntax", "when": "tokens.input >", "then": ref("x")},
        {"name": "fn", "when": "nope(1) > 2", "then": ref("x")},
        {"name": "op", "when": {"all": [{"field": "tokens.input", "op": "bigger", "value": 1}]}, "then": ref("x")},
    ]
    cfg = base_config(resources={"chat": {"model": ref("p"), "routing": rules}})
    with pytest.raises(ConfigError) as info:
        config_from_dict(cfg, environ={})
    paths = [p for p, _ in info.value.errors]
    base = "$.workspaces.acme.environments.prod.resources.chat.routing"
    assert paths == [f"{base}[1].when", f"{base}[2].when", f"{base}[3]"]


async def test_routed_model_heads_the_fallback_chain() -> None:
    """The routed model is tried first, then the resource's fallback, and the rule is echoed."""
    fake = FakeProvider()
    fake.queue_error(UpstreamHTTPError(503, "routed model down"))
    resource = {
        "model": {"connection": "fake", "model": "primary"},
        "routing": [{"name": "long", "when": "tokens.input > 20", "then": {"connection": "fake", "model": "big"}}],
        "fallback": [{"connection": "fake", "model": "backup"}],
    }
    async with make_test_gateway(fake, resource=resource) as gw:
        body = {"model": "chat", "messages": [{"role": "user", "content": "word " * 100}]}
        reply = await gw.chat_completions("test", "test", body, api_key=TEST_KEY)
    assert [c.model for c in fake.calls] == ["big", "backup"]
    assert reply.headers["x-vmx-routing-rule"] == "long"
    assert reply.headers["x-vmx-attempts"] == "2"


async def test_error_rate_routes_away_from_a_failing_connection() -> None:
    """`error_rate(5) > 50` sees the primary connection's recent failures and reroutes."""
    fake = FakeProvider()
    resource = {
        "model": {"connection": "fake", "model": "primary"},
        "routing": [{"name": "unhealthy", "when": "error_rate(5) > 50", "then": {"connection": "fake", "model": "other"}}],
    }
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    async with make_test_gateway(fake, resource=resource) as gw:
        first = await gw.chat_completions("test", "test", body, api_key=TEST_KEY)
        fake.queue_error(*(UpstreamHTTPError(500, "down") for _ in range(3)))
        for _ in range(3):
            with pytest.raises(UpstreamFailed):
                await gw.chat_completions("test", "test", body, api_key=TEST_KEY)
        routed = await gw.chat_completions("test", "test", body, api_key=TEST_KEY)
    assert first.headers["x-vmx-model"] == "primary"
    assert routed.headers["x-vmx-model"] == "other"


async def test_secondary_model_index_skips_routing() -> None:
    """`secondaryModelIndex: 0` picks the first secondary model and no rule runs."""
    cfg = base_config(resources={"chat": {
        "model": ref("p"), "secondary_models": [ref("second")],
        "routing": [{"name": "all", "then": ref("routed")}],
    }})
    async with Gateway.from_config(config_from_dict(cfg, environ={})) as gw:
        body = {"model": "chat", "messages": [], "vmx": {"secondaryModelIndex": 0}}
        reply = await gw.chat_completions("acme", "prod", body, api_key=KEY)
    assert reply.headers["x-vmx-model"] == "second"
    assert "x-vmx-routing-rule" not in reply.headers


class _TeamPlugin:
    """A third-party plugin adding a pure and an async rule function."""

    @staticmethod
    def shout(text: str) -> str:
        return text.upper()

    @staticmethod
    async def quota_left(ctx: RuleContext, team: str) -> int:
        return {"red": 0, "blue": 5}[team]

    @hookimpl
    def vmx_register_rule_functions(self) -> dict[str, Any]:
        return {"shout": self.shout, "quota_left": self.quota_left}


async def test_plugins_add_pure_and_async_rule_functions() -> None:
    """Functions from `vmx_register_rule_functions` are callable in rules; async ones prefetched."""
    resource = {
        "model": {"connection": "fake", "model": "primary"},
        "routing": [
            {"name": "loud", "when": 'shout(request.last_message) == "HELLO"', "then": {"connection": "fake", "model": "loud"}},
            {"name": "broke", "when": 'quota_left("red") == 0', "then": {"connection": "fake", "model": "cheap"}},
        ],
    }
    async with make_test_gateway(FakeProvider(), resource=resource, plugins=[_TeamPlugin()]) as gw:
        loud = await gw.chat_completions("test", "test", {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}, api_key=TEST_KEY)
        broke = await gw.chat_completions("test", "test", {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}, api_key=TEST_KEY)
    assert (loud.headers["x-vmx-model"], broke.headers["x-vmx-model"]) == ("loud", "cheap")


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("tokens.inputs > 10", "tokens has no field 'inputs'"),
        ("token.input > 10", "undeclared reference to 'token'"),
        ('tokens.input > "8000"', "type error: cannot compare num with string"),
        ("request.stream == 1", "type error: cannot compare bool with num"),
        ('metadata.team == 3', "type error: cannot compare string with num"),
        ({"all": [{"field": "request.modle", "op": "eq", "value": "x"}]}, "'request.modle' is not a field of request"),
        ({"any": [{"field": "meta.team", "op": "exists"}]}, "unknown variable 'meta'"),
    ],
)
def test_unknown_variables_and_type_errors_fail_at_load(when: Any, message: str) -> None:
    """Typos in variable names and comparisons of incompatible types fail `vmx check`."""
    cfg = base_config(resources={"chat": {"model": ref("p"), "routing": [{"name": "r", "when": when, "then": ref("x")}]}})
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(cfg, environ={})
    assert info.value.errors[0][0].startswith("$.workspaces.acme.environments.prod.resources.chat.routing[0]")
