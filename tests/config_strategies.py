"""Hypothesis strategies for valid ``VmxConfig`` trees, and a schema walker that lists the
places in an unstructured config where a defect can be injected (used by test_config.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import types
import typing
from typing import Any, Literal

import attrs
from hypothesis import strategies as st

from vmx_core.config.models import (
    ApiKeyConfig,
    AuditConfig,
    CapacityLimit,
    CapacitySettings,
    CircuitBreakerConfig,
    ConnectionConfig,
    EncryptionConfig,
    EnvironmentConfig,
    LimitsConfig,
    ModelRef,
    PoolConfig,
    ResourceConfig,
    RoutingRule,
    ServerConfig,
    SplitChoice,
    StorageConfig,
    VmxConfig,
    WorkspaceConfig,
)
from vmx_core.config.validate import OVERRIDABLE
from vmx_core.plugins import Plugins
from vmx_core.secrets import Secret

PROVIDERS = Plugins.load().providers()

# Names as validate.py accepts them; free text without "$" (a literal "${" would need "$${").
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,9}", fullmatch=True)
text = st.text(st.characters(blacklist_characters="$", blacklist_categories=("Cs",)), max_size=12)
nonempty = text.filter(bool)
small_int = st.integers(0, 10**9)
positive = st.integers(1, 10**9)
percent = st.floats(0, 100, allow_nan=False)
json_scalar = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | text | st.floats(-1e6, 1e6, allow_nan=False)
json_value = st.recursive(
    json_scalar, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(text, inner, max_size=2), max_leaves=4
)
json_object = st.dictionaries(text, json_value, max_size=2)
secrets = st.builds(Secret, text)
CEL = ["tokens.input > 8000", 'request.format == "responses"', "request.stream", 'metadata.team == "a"']
when = st.none() | st.sampled_from(CEL) | st.fixed_dictionaries(
    {"all": st.lists(st.fixed_dictionaries({"field": st.just("tokens.input"), "op": st.just("gt"), "value": small_int}), min_size=1, max_size=2)}
)


def unwrap(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def value_for(tp: Any) -> st.SearchStrategy[Any] | None:
    """A strategy for a valid unstructured value of a (provider options) field type."""
    inner, optional = unwrap(tp)
    base: st.SearchStrategy[Any] | None
    if inner is bool:
        base = st.booleans()
    elif inner is int:
        base = st.integers(0, 1000)
    elif inner is float:
        base = st.floats(0, 1000, allow_nan=False)
    elif inner is str:
        base = text
    elif typing.get_origin(inner) is dict:
        base = st.dictionaries(text, text, max_size=2)
    elif typing.get_origin(inner) is list:
        base = st.lists(text, max_size=2)
    else:
        base = None
    if base is not None and optional:
        base = st.none() | base
    return base


def options_for(provider: str) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the provider's ``options_type`` fields, each with a valid value."""
    cls = PROVIDERS[provider].options_type
    hints = typing.get_type_hints(cls)
    fields = {f.name: value_for(hints[f.name]) for f in attrs.fields(cls)}
    return st.fixed_dictionaries({}, optional={k: s for k, s in fields.items() if s is not None})


@st.composite
def capacity_limit(draw: st.DrawFn) -> CapacityLimit:
    requests, tokens = draw(st.sampled_from([(1, 0), (0, 1), (1, 1)]))
    dimension = draw(st.sampled_from([None, "source-ip", "metadata"]))
    return CapacityLimit(
        period=draw(st.sampled_from(typing.get_args(typing.get_type_hints(CapacityLimit)["period"]))),
        requests=draw(small_int) if requests else None,
        tokens=draw(small_int) if tokens else None,
        dimension=dimension,
        dimension_field=draw(nonempty) if dimension == "metadata" else draw(st.none() | text),
    )


limits = st.lists(capacity_limit(), max_size=2)


@st.composite
def connection(draw: st.DrawFn) -> ConnectionConfig:
    provider = draw(st.sampled_from(["mock", "openai"]))
    return ConnectionConfig(
        provider=provider,
        credentials=draw(st.dictionaries(text, secrets, max_size=2)),
        options=draw(options_for(provider)),
        capacity=draw(limits),
        description=draw(st.none() | text),
    )


def model_ref(connections: list[str]) -> st.SearchStrategy[ModelRef]:
    return st.builds(
        ModelRef,
        connection=st.sampled_from(connections),
        model=nonempty,
        timeout_ms=st.none() | positive,
        max_retries=st.integers(0, 10),
        default_args=json_object,
    )


@st.composite
def routing_rule(draw: st.DrawFn, name: str, connections: list[str]) -> RoutingRule:
    ref = model_ref(connections)
    kind = draw(st.sampled_from(["then", "action", "split"]))
    split = None
    if kind == "split":
        split = draw(st.lists(st.builds(SplitChoice, weight=percent, then=ref), min_size=1, max_size=3))
        split[0] = SplitChoice(weight=draw(st.floats(1, 100)), then=split[0].then)
    return RoutingRule(
        name=name,
        when=draw(when),
        traffic=draw(st.none() | percent),
        then=draw(ref) if kind == "then" else None,
        action="block" if kind == "action" else None,
        split=split,
    )


@st.composite
def resource(draw: st.DrawFn, connections: list[str]) -> ResourceConfig:
    ref = model_ref(connections)
    rule_names = draw(st.lists(names, max_size=2, unique=True))
    return ResourceConfig(
        model=draw(ref),
        routing=[draw(routing_rule(n, connections)) for n in rule_names],
        fallback=draw(st.lists(ref, max_size=2)),
        secondary_models=draw(st.lists(ref, max_size=1)),
        capacity=draw(limits),
        fallback_on=draw(st.lists(st.integers(400, 499), max_size=2)),
        default_max_tokens=draw(st.none() | positive),
        stream_idle_timeout_ms=draw(positive),
        circuit_breaker=draw(st.none() | st.builds(
            CircuitBreakerConfig, threshold=percent, window_s=positive, min_requests=positive, cooldown_s=positive
        )),
        description=draw(st.none() | text),
    )


#: Keys must be unique across a whole config; shrinking would otherwise collide them.
_KEY_SERIAL = itertools.count()


@st.composite
def api_key(draw: st.DrawFn, resources: list[str]) -> ApiKeyConfig:
    hashed = draw(st.booleans())
    serial = next(_KEY_SERIAL)
    scope = st.just(["*"]) if not resources else st.lists(st.sampled_from([*resources, "*"]), max_size=3)
    return ApiKeyConfig(
        key_sha256=hashlib.sha256(f"key-{serial}".encode()).hexdigest() if hashed else None,
        key=None if hashed else Secret(f"{draw(nonempty)}-{serial}"),
        resources=draw(scope),
        capacity=draw(limits),
        allow_overrides=draw(st.lists(st.sampled_from(sorted(OVERRIDABLE)), max_size=3)),
        enabled=draw(st.booleans()),
        expires_at=draw(st.none() | st.datetimes(
            min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
        )),
        description=draw(st.none() | text),
    )


@st.composite
def pools(draw: st.DrawFn, resources: list[str]) -> list[PoolConfig]:
    """Pools as validate.py accepts them: each resource in one pool at most, and minimums
    adding up to 100 at most (at most 2 pools of at most 50 each)."""
    free = list(resources)
    out = []
    for name in draw(st.lists(names, max_size=2, unique=True)):
        mine = draw(st.lists(st.sampled_from(free), max_size=3, unique=True)) if free else []
        free = [r for r in free if r not in mine]
        low = draw(st.floats(0, 50, allow_nan=False))
        out.append(PoolConfig(
            name=name,
            rank=draw(st.integers(0, 100)),
            min_reservation=low,
            max_reservation=draw(st.floats(low, 100, allow_nan=False)),
            resources=mine,
            max_wait_ms=draw(st.integers(0, 10**6)),
        ))
    return out


@st.composite
def environment(draw: st.DrawFn) -> EnvironmentConfig:
    conns = draw(st.lists(names, min_size=1, max_size=2, unique=True))
    res_names = draw(st.lists(names, max_size=2, unique=True))
    return EnvironmentConfig(
        connections={n: draw(connection()) for n in conns},
        resources={n: draw(resource(conns)) for n in res_names},
        api_keys={n: draw(api_key(res_names)) for n in draw(st.lists(names, max_size=2, unique=True))},
        pools=draw(pools(res_names)),
    )


configs = st.builds(
    VmxConfig,
    server=st.builds(ServerConfig, host=text, port=st.integers(1, 65535), workers=st.integers(1, 64)),
    storage=st.builds(
        StorageConfig,
        audit=st.sampled_from(["none", "postgresql://vmx@db/vmx"]) | text.map(lambda t: "sqlite:///" + t),
        capacity=text,
        config=text,
    ),
    encryption=st.none() | st.builds(
        EncryptionConfig, provider=text, key=st.none() | secrets, key_id=st.none() | text, region=st.none() | text
    ),
    limits=st.builds(LimitsConfig, max_body_bytes=positive, max_timeout_ms=positive),
    audit=st.builds(
        AuditConfig,
        payloads=st.sampled_from(["none", "redacted", "full"]),
        # Valid JSON paths: a key, then keys, indexes or wildcards.
        redact_paths=st.lists(
            st.builds(lambda head, tail: "$." + head + "".join(tail), st.from_regex(r"[A-Za-z_][\w-]{0,8}", fullmatch=True),
                      st.lists(st.sampled_from([".a", "[0]", "[*]", "..b", "['c d']"]), max_size=3)),
            max_size=2,
        ),
        retention_days=st.none() | positive,
        max_stream_payload_bytes=st.integers(0, 10_000_000),
        queue_size=positive,
        batch_size=positive,
        batch_wait_ms=st.integers(0, 1000),
    ),
    capacity=st.builds(CapacitySettings, count_cached_tokens=st.booleans(), on_store_error=st.sampled_from(["allow", "deny"])),
    workspaces=st.dictionaries(
        names, st.builds(WorkspaceConfig, environments=st.dictionaries(names, environment(), min_size=1, max_size=2)),
        max_size=2,
    ),
)


# --------------------------------------------------------------------------------------------
# Where a defect can go.


@attrs.frozen
class Site:
    """A place in an unstructured config: ``container[key]`` holds a value of type ``tp``
    (``key`` is None for an object site, whose ``container`` is the object itself)."""

    path: str
    container: Any
    key: Any
    tp: Any


def sites(node: Any, tp: Any = VmxConfig, path: str = "$") -> list[Site]:
    """Every object and every typed value in ``node`` (the unstructured form of ``tp``)."""
    out: list[Site] = []
    tp, _ = unwrap(tp)
    if node is None or tp is Secret:
        return out
    if attrs.has(tp):
        out.append(Site(path, node, None, tp))
        hints = typing.get_type_hints(tp)
        children = [(f.name, hints[f.name], f"{path}.{f.name}") for f in attrs.fields(tp)]
    elif typing.get_origin(tp) is list:
        children = [(i, typing.get_args(tp)[0], f"{path}[{i}]") for i in range(len(node))]
    elif typing.get_origin(tp) is dict:
        children = [(k, typing.get_args(tp)[1], f"{path}.{k}") for k in node]
    else:
        return out
    for key, child_tp, child_path in children:
        out.append(Site(child_path, node, key, child_tp))
        out.extend(sites(node[key], child_tp, child_path))
    return out


def wrong_value(tp: Any) -> Any:
    """A value of the wrong type for ``tp``; ``NotImplemented`` when anything goes (``Any``)."""
    tp, _ = unwrap(tp)
    if tp is Any:
        return NotImplemented
    if typing.get_origin(tp) is Literal:
        return "fortnight"
    if tp in (int, float):
        return "not a number"
    if tp is bool:
        return "maybe"
    if tp in (str, Secret):
        return ["a", "list"]
    if tp is dt.datetime:
        return "not a date"
    if typing.get_origin(tp) is list:
        return "a string"
    if typing.get_origin(tp) is dict or attrs.has(tp):
        return ["a", "list"]
    raise AssertionError(f"no wrong value for {tp!r}")
