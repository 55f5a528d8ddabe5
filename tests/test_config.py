"""The config loader (DESIGN §7): round trips, defect paths, env expansion, semantic checks."""

from __future__ import annotations

import copy
import typing
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.config_strategies import PROVIDERS, configs, sites, unwrap, wrong_value
from vmx_core.config import ModelRef, VmxConfig, config_from_dict, load_config, parse_config
from vmx_core.config.convert import unstructure
from vmx_core.config.models import ConnectionConfig
from vmx_core.errors import ConfigError

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENV = "$.workspaces.acme.environments.prod"


def load(text: str, environ: dict[str, str] | None = None) -> VmxConfig:
    return parse_config(text, environ=environ or {}, providers=PROVIDERS)


def paths(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [p for p, _ in exc.value.errors]


# ------------------------------------------------------------------------------------------
# (a) round trip


@SETTINGS
@given(configs)
def test_any_valid_config_round_trips_through_yaml(config: VmxConfig) -> None:
    """Any valid config, dumped to YAML and loaded again, equals the original."""
    assert load(yaml.safe_dump(unstructure(config))) == config


def test_round_trip_through_a_file(tmp_path: Any) -> None:
    """load_config reads a file and gives the same config as parse_config on its text."""
    text = yaml.safe_dump(_base())
    (tmp_path / "vmx.yaml").write_text(text)
    assert load_config(tmp_path / "vmx.yaml", environ={}, providers=PROVIDERS) == load(text)


# ------------------------------------------------------------------------------------------
# (b) one injected defect is reported at exactly its path


def _injections(tree: dict[str, Any]) -> dict[str, list[tuple[Callable[[], None], str]]]:
    """Every defect that can be injected into ``tree``, by kind: (apply, expected path)."""
    all_sites = sites(tree)
    objects = [s for s in all_sites if s.key is None]
    conns = [s for s in objects if s.tp is ConnectionConfig]
    out: dict[str, list[tuple[Callable[[], None], str]]] = {k: [] for k in (
        "unknown_key", "wrong_type", "unknown_connection", "bad_enum",
        "unknown_provider", "unknown_option", "wrong_option_type")}

    def setter(container: Any, key: Any, value: Any) -> Callable[[], None]:
        return lambda: container.__setitem__(key, value)

    for s in objects:
        out["unknown_key"].append((setter(s.container, "bogus_key", 1), f"{s.path}.bogus_key"))
        if s.tp is ModelRef:
            out["unknown_connection"].append((setter(s.container, "connection", "no such conn"), f"{s.path}.connection"))
    for s in all_sites:
        if s.key is None:
            continue
        bad = wrong_value(s.tp)
        if bad is not NotImplemented:
            out["wrong_type"].append((setter(s.container, s.key, bad), s.path))
        if typing.get_origin(unwrap(s.tp)[0]) is typing.Literal:
            out["bad_enum"].append((setter(s.container, s.key, "fortnight"), s.path))
    for s in conns:
        options = s.container["options"]
        out["unknown_provider"].append((setter(s.container, "provider", "no-such-provider"), f"{s.path}.provider"))
        out["unknown_option"].append((setter(options, "bogus_option", 1), f"{s.path}.options.bogus_option"))
        cls = PROVIDERS[s.container["provider"]].options_type
        hints = typing.get_type_hints(cls)
        for f in attrs.fields(cls):
            out["wrong_option_type"].append((setter(options, f.name, wrong_value(hints[f.name])), f"{s.path}.options.{f.name}"))
    return {k: v for k, v in out.items() if v}


@SETTINGS
@given(configs, st.data())
def test_one_injected_defect_is_reported_at_its_path(config: VmxConfig, data: st.DataObject) -> None:
    """A single defect anywhere in a valid config gives exactly one error, at the defect's path."""
    tree = unstructure(config)
    injections = _injections(tree)
    kind = data.draw(st.sampled_from(sorted(injections)), label="kind")
    apply, expected = data.draw(st.sampled_from(injections[kind]), label="site")
    apply()
    with pytest.raises(ConfigError) as exc:
        load(yaml.safe_dump(tree))
    assert paths(exc) == [expected], exc.value.errors


def test_unknown_key_is_named_at_its_own_path() -> None:
    """An unknown option is reported at `...options.bogus`, naming the key."""
    raw = _base()
    raw["workspaces"]["acme"]["environments"]["prod"]["connections"]["c1"]["options"] = {"bogus": 1}
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw, environ={}, providers=PROVIDERS)
    assert exc.value.errors == [(f"{ENV}.connections.c1.options.bogus", "unknown key 'bogus'")]


@pytest.mark.parametrize(
    ("field", "value"), [("resources", "chat"), ("resources", {"chat": 1}), ("allow_overrides", "model")]
)
def test_a_string_or_mapping_is_not_taken_for_a_list(field: str, value: Any) -> None:
    """A list field given a string or mapping is an error, not a list of its characters or keys."""
    raw = _base()
    raw["workspaces"]["acme"]["environments"]["prod"]["api_keys"]["app"][field] = value
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw, environ={}, providers=PROVIDERS)
    assert paths(exc) == [f"{ENV}.api_keys.app.{field}"]


def test_every_defect_is_reported_at_once() -> None:
    """Two independent defects are both reported in one ConfigError."""
    raw = _base()
    env = raw["workspaces"]["acme"]["environments"]["prod"]
    env["connections"]["c1"]["capacity"] = [{"period": "fortnight", "requests": 1}]
    env["resources"]["chat"]["stream_idle_timeout_ms"] = "soon"
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw, environ={}, providers=PROVIDERS)
    assert sorted(paths(exc)) == [
        f"{ENV}.connections.c1.capacity[0].period",
        f"{ENV}.resources.chat.stream_idle_timeout_ms",
    ]


# ------------------------------------------------------------------------------------------
# (c) environment expansion


def _base() -> dict[str, Any]:
    return {"workspaces": {"acme": {"environments": {"prod": {
        "connections": {"c1": {"provider": "mock"}, "c2": {"provider": "openai"}},
        "resources": {"chat": {"model": {"connection": "c1", "model": "m1"}}},
        "api_keys": {"app": {"key_sha256": "a" * 64, "resources": ["chat"]}},
    }}}}}


def _model(config: VmxConfig) -> ModelRef:
    return config.workspaces["acme"].environments["prod"].resources["chat"].model


def _with_model(value: str) -> str:
    raw = _base()
    raw["workspaces"]["acme"]["environments"]["prod"]["resources"]["chat"]["model"]["model"] = value
    return yaml.safe_dump(raw)


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1))
def test_expansion_substitutes_any_value_verbatim(value: str) -> None:
    """`${VAR}` becomes the variable's value exactly, even with `: `, newlines, quotes or `${`."""
    assert _model(load(_with_model("${M}"), {"M": value})).model == value


@settings(max_examples=100, deadline=None)
@given(st.text(st.characters(blacklist_characters="}$", blacklist_categories=("Cs",)), min_size=1))
def test_default_applies_when_unset_or_empty(default: str) -> None:
    """`${VAR:-default}` uses the default when VAR is unset or set but empty, else VAR."""
    text = _with_model("pre-${M:-" + default + "}-post")
    assert _model(load(text, {})).model == f"pre-{default}-post"
    assert _model(load(text, {"M": ""})).model == f"pre-{default}-post"
    assert _model(load(text, {"M": "x"})).model == "pre-x-post"


def test_empty_default_gives_an_empty_string() -> None:
    """`${VAR:-}` with VAR unset expands to the empty string."""
    raw = _base()
    raw["workspaces"]["acme"]["environments"]["prod"]["connections"]["c2"]["credentials"] = {"api_key": "${K:-}"}
    config = load(yaml.safe_dump(raw))
    assert config.workspaces["acme"].environments["prod"].connections["c2"].credentials["api_key"].reveal() == ""


def test_double_dollar_is_a_literal() -> None:
    """`$${VAR}` is the literal text `${VAR}`, even when VAR is set."""
    assert _model(load(_with_model("a$${M}b"), {"M": "x"})).model == "a${M}b"


def test_unset_variable_fails_naming_its_path() -> None:
    """An unset variable without a default is a ConfigError at the key path that used it."""
    raw = _base()
    env = raw["workspaces"]["acme"]["environments"]["prod"]
    env["connections"]["c2"]["credentials"] = {"api_key": "${OPENAI_KEY}"}
    env["api_keys"]["app"]["resources"] = ["${RES}"]
    with pytest.raises(ConfigError) as exc:
        load(yaml.safe_dump(raw), {"OTHER": "1"})
    assert sorted(paths(exc)) == [f"{ENV}.api_keys.app.resources[0]", f"{ENV}.connections.c2.credentials.api_key"]
    assert "OPENAI_KEY" in str(exc.value)


def test_expanded_value_cannot_change_structure() -> None:
    """A value holding YAML syntax stays one string: expansion runs after parsing."""
    evil = "x\nevil: true\nport: 1: {a: [b"
    config = load("server: {host: '${H}', port: 8080}\n" + yaml.safe_dump(_base()), {"H": evil})
    assert config.server.host == evil
    assert config.server.port == 8080


def test_int_field_from_an_environment_string() -> None:
    """`port: ${PORT}` with PORT="8081" gives the int 8081."""
    config = load("server: {port: '${PORT}'}\n" + yaml.safe_dump(_base()), {"PORT": "8081"})
    assert config.server.port == 8081
    assert type(config.server.port) is int


def _key_enabled(value: Any, environ: dict[str, str] | None = None) -> Any:
    raw = _base()
    raw["workspaces"]["acme"]["environments"]["prod"]["api_keys"]["app"]["enabled"] = value
    return load(yaml.safe_dump(raw), environ).workspaces["acme"].environments["prod"].api_keys["app"].enabled


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("true", True), (False, False), ("FALSE", False)])
def test_bool_from_a_string(value: Any, expected: bool) -> None:
    """`enabled: "false"` (a quoted string) is False, not the truthy string."""
    assert _key_enabled(value) is expected


def test_bool_from_an_env_var() -> None:
    """`enabled: ${ON}` with ON="false" is False; a non-boolean string is an error at its path."""
    assert _key_enabled("${ON}", {"ON": "false"}) is False
    with pytest.raises(ConfigError) as exc:
        _key_enabled("${ON}", {"ON": "no way"})
    assert paths(exc) == [f"{ENV}.api_keys.app.enabled"]


# ------------------------------------------------------------------------------------------
# (d) semantic checks (validate.py)


def _env(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["workspaces"]["acme"]["environments"]["prod"]


def _res(raw: dict[str, Any]) -> dict[str, Any]:
    return _env(raw)["resources"]["chat"]


REF = {"connection": "c1", "model": "m"}
SEMANTIC: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("body limit", lambda r: r.update(limits={"max_body_bytes": 0}), "$.limits.max_body_bytes"),
    ("timeout limit", lambda r: r.update(limits={"max_timeout_ms": -1}), "$.limits.max_timeout_ms"),
    ("port 0", lambda r: r.update(server={"port": 0}), "$.server.port"),
    ("port too big", lambda r: r.update(server={"port": 65536}), "$.server.port"),
    ("workers", lambda r: r.update(server={"workers": 0}), "$.server.workers"),
    ("workspace name", lambda r: r["workspaces"].update({"bad name": {}}), "$.workspaces.bad name"),
    ("environment name", lambda r: r["workspaces"]["acme"]["environments"].update({"-x": {}}), "$.workspaces.acme.environments.-x"),
    ("connection name", lambda r: _env(r)["connections"].update({"a/b": {"provider": "mock"}}), f"{ENV}.connections.a/b"),
    ("resource name", lambda r: _env(r)["resources"].update({"": {"model": REF}}), f"{ENV}.resources."),
    ("key name", lambda r: _env(r)["api_keys"].update({"k k": {"key_sha256": "b" * 64}}), f"{ENV}.api_keys.k k"),
    ("empty limit", lambda r: _env(r)["connections"]["c1"].update(capacity=[{"period": "day"}]), f"{ENV}.connections.c1.capacity[0]"),
    ("negative requests", lambda r: _res(r).update(capacity=[{"period": "day", "requests": -1}]), f"{ENV}.resources.chat.capacity[0].requests"),
    ("negative tokens", lambda r: _res(r).update(capacity=[{"period": "day", "tokens": -5}]), f"{ENV}.resources.chat.capacity[0].tokens"),
    ("metadata field", lambda r: _res(r).update(capacity=[{"period": "day", "tokens": 1, "dimension": "metadata"}]), f"{ENV}.resources.chat.capacity[0].dimension_field"),
    ("unknown provider", lambda r: _env(r)["connections"]["c1"].update(provider="nope"), f"{ENV}.connections.c1.provider"),
    ("model connection", lambda r: _res(r)["model"].update(connection="zz"), f"{ENV}.resources.chat.model.connection"),
    ("empty model", lambda r: _res(r)["model"].update(model=""), f"{ENV}.resources.chat.model.model"),
    ("ref timeout", lambda r: _res(r)["model"].update(timeout_ms=0), f"{ENV}.resources.chat.model.timeout_ms"),
    ("ref retries", lambda r: _res(r)["model"].update(max_retries=11), f"{ENV}.resources.chat.model.max_retries"),
    ("fallback ref", lambda r: _res(r).update(fallback=[REF, {"connection": "zz", "model": "m"}]), f"{ENV}.resources.chat.fallback[1].connection"),
    ("secondary ref", lambda r: _res(r).update(secondary_models=[{"connection": "zz", "model": "m"}]), f"{ENV}.resources.chat.secondary_models[0].connection"),
    ("idle timeout", lambda r: _res(r).update(stream_idle_timeout_ms=0), f"{ENV}.resources.chat.stream_idle_timeout_ms"),
    ("fallback_on 5xx", lambda r: _res(r).update(fallback_on=[404, 500]), f"{ENV}.resources.chat.fallback_on[1]"),
    ("duplicate rule", lambda r: _res(r).update(routing=[{"name": "a", "action": "block"}, {"name": "a", "action": "block"}]), f"{ENV}.resources.chat.routing[1].name"),
    ("two outcomes", lambda r: _res(r).update(routing=[{"name": "a", "action": "block", "then": REF}]), f"{ENV}.resources.chat.routing[0]"),
    ("no outcome", lambda r: _res(r).update(routing=[{"name": "a", "when": "request.stream"}]), f"{ENV}.resources.chat.routing[0]"),
    ("traffic", lambda r: _res(r).update(routing=[{"name": "a", "traffic": 101, "then": REF}]), f"{ENV}.resources.chat.routing[0].traffic"),
    ("rule ref", lambda r: _res(r).update(routing=[{"name": "a", "then": {"connection": "zz", "model": "m"}}]), f"{ENV}.resources.chat.routing[0].then.connection"),
    ("split weight", lambda r: _res(r).update(routing=[{"name": "a", "split": [{"weight": 5, "then": REF}, {"weight": -1, "then": REF}]}]), f"{ENV}.resources.chat.routing[0].split[1].weight"),
    ("split sum", lambda r: _res(r).update(routing=[{"name": "a", "split": [{"weight": 0, "then": REF}]}]), f"{ENV}.resources.chat.routing[0].split"),
    ("split ref", lambda r: _res(r).update(routing=[{"name": "a", "split": [{"weight": 1, "then": {"connection": "zz", "model": "m"}}]}]), f"{ENV}.resources.chat.routing[0].split[0].then.connection"),
    ("key and hash", lambda r: _env(r)["api_keys"]["app"].update(key="vmx_x"), f"{ENV}.api_keys.app"),
    ("neither key nor hash", lambda r: _env(r)["api_keys"]["app"].pop("key_sha256"), f"{ENV}.api_keys.app"),
    ("uppercase hash", lambda r: _env(r)["api_keys"]["app"].update(key_sha256="A" * 64), f"{ENV}.api_keys.app.key_sha256"),
    ("short hash", lambda r: _env(r)["api_keys"]["app"].update(key_sha256="a" * 63), f"{ENV}.api_keys.app.key_sha256"),
    ("key resource", lambda r: _env(r)["api_keys"]["app"].update(resources=["chat", "nope"]), f"{ENV}.api_keys.app.resources"),
    ("override", lambda r: _env(r)["api_keys"]["app"].update(allow_overrides=["model", "capacity"]), f"{ENV}.api_keys.app.allow_overrides[1]"),
    ("key capacity", lambda r: _env(r)["api_keys"]["app"].update(capacity=[{"period": "week"}]), f"{ENV}.api_keys.app.capacity[0]"),
    ("pool name", lambda r: _env(r).update(pools=[_pool("p"), _pool("p")]), f"{ENV}.pools[1].name"),
    ("pool bounds", lambda r: _env(r).update(pools=[_pool("p", lo=60, hi=50)]), f"{ENV}.pools[0]"),
    ("pool over 100", lambda r: _env(r).update(pools=[_pool("p", hi=101)]), f"{ENV}.pools[0]"),
    ("pool resource", lambda r: _env(r).update(pools=[_pool("p", resources=["nope"])]), f"{ENV}.pools[0].resources"),
    ("pool wait", lambda r: _env(r).update(pools=[{**_pool("p"), "max_wait_ms": -1}]), f"{ENV}.pools[0].max_wait_ms"),
    ("resource in two pools", lambda r: _env(r).update(pools=[_pool("p"), _pool("q")]), f"{ENV}.pools[1].resources"),
    ("minimums over 100", lambda r: _env(r).update(pools=[_pool("p", lo=60, hi=60), {**_pool("q", lo=40.5, hi=50), "resources": []}]), f"{ENV}.pools"),
]


def _pool(name: str, lo: float = 10, hi: float = 50, resources: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "rank": 1, "min_reservation": lo, "max_reservation": hi, "resources": resources or ["chat"]}


def test_pool_minimums_add_up_as_written_decimals() -> None:
    """Minimums of 33.3, 33.3 and 33.4 add up to 100 (not 100.00000000000001): accepted."""
    raw = _base()
    raw["workspaces"]["acme"]["environments"]["prod"]["pools"] = [
        {**_pool(n, lo=lo, hi=lo), "resources": []} for n, lo in (("a", 33.3), ("b", 33.3), ("c", 33.4))
    ]
    config = config_from_dict(raw, environ={}, providers=PROVIDERS)
    assert [p.min_reservation for p in config.workspaces["acme"].environments["prod"].pools] == [33.3, 33.3, 33.4]


@pytest.mark.parametrize(("mutate", "path"), [pytest.param(m, p, id=n) for n, m, p in SEMANTIC])
def test_semantic_check_reports_its_path(mutate: Callable[[dict[str, Any]], Any], path: str) -> None:
    """Each cross-field check of validate.py fails with exactly its own path."""
    raw = copy.deepcopy(_base())
    config_from_dict(copy.deepcopy(raw), environ={}, providers=PROVIDERS)  # the base is valid
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw, environ={}, providers=PROVIDERS)
    assert paths(exc) == [path], exc.value.errors


def test_non_mapping_and_bad_yaml_are_config_errors() -> None:
    """A top-level list and unparsable YAML are ConfigErrors, the latter with its line."""
    with pytest.raises(ConfigError):
        load("- a\n- b\n")
    with pytest.raises(ConfigError, match="line 2"):
        load("server: 1\n  port: 2\n")


def test_a_malformed_encrypted_credential_is_a_config_error() -> None:
    """A `vmx:enc:v1:` value that cannot be a ciphertext fails loading at its path, unechoed."""
    raw = {"workspaces": {"a": {"environments": {"p": {"connections": {
        "c": {"provider": "openai", "credentials": {"api_key": "vmx:enc:v1:libsodium:AA AA"}}}}}}}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, environ={})
    assert info.value.errors == [
        ("$.workspaces.a.environments.p.connections.c.credentials.api_key",
         "malformed ciphertext: expected vmx:enc:v1:<cipher>:<base64>")
    ]
    assert "AA AA" not in str(info.value)
