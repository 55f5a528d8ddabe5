"""Checks that need more than one key: references between objects, provider options."""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING

from vmx_core.audit.redact import compile_path
from vmx_core.config.convert import structure
from vmx_core.config.models import (
    ApiKeyConfig,
    CapacityLimit,
    EnvironmentConfig,
    ModelRef,
    ResourceConfig,
    RoutingRule,
    VmxConfig,
)
from vmx_core.errors import ConfigError, CredentialError
from vmx_core.providers import Provider
from vmx_core.security.apikeys import hash_key
from vmx_core.security.ciphers import is_encrypted, parse

if TYPE_CHECKING:
    from vmx_core.routing.rules import RuleFunctions

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: What ``allow_overrides`` may grant (DESIGN §4).  Connections and capacity never are.
OVERRIDABLE = frozenset(
    {"model", "default_args", "fallback", "secondary_models", "routing", "default_max_tokens",
     "fallback_on", "stream_idle_timeout_ms"}
)

Errors = list[tuple[str, str]]


def validate(
    config: VmxConfig,
    providers: Mapping[str, Provider] | None = None,
    rule_functions: RuleFunctions | None = None,
) -> None:
    errors: Errors = []
    if config.limits.max_body_bytes <= 0:
        errors.append(("$.limits.max_body_bytes", "must be positive"))
    if config.limits.max_timeout_ms <= 0:
        errors.append(("$.limits.max_timeout_ms", "must be positive"))
    if not 0 < config.server.port < 65536:
        errors.append(("$.server.port", "must be between 1 and 65535"))
    if config.server.workers < 1:
        errors.append(("$.server.workers", "must be at least 1"))
    if config.encryption is not None and config.encryption.data_key_ttl_s < 1:
        errors.append(("$.encryption.data_key_ttl_s", "must be at least 1"))
    if config.audit.queue_size < 1:
        errors.append(("$.audit.queue_size", "must be at least 1"))
    if config.audit.batch_size < 1:
        errors.append(("$.audit.batch_size", "must be at least 1"))
    if config.audit.retention_days is not None and config.audit.retention_days < 1:
        errors.append(("$.audit.retention_days", "must be at least 1"))
    if config.audit.batch_wait_ms < 0:
        errors.append(("$.audit.batch_wait_ms", "must not be negative"))
    if config.audit.max_stream_payload_bytes < 0:
        errors.append(("$.audit.max_stream_payload_bytes", "must not be negative"))
    for i, text in enumerate(config.audit.redact_paths):
        try:
            compile_path(text)
        except ValueError as exc:
            errors.append((f"$.audit.redact_paths[{i}]", str(exc)))
    if not config.storage.audit.startswith(("sqlite://", "postgresql://", "postgres://", "none")) and "://" not in config.storage.audit:
        errors.append(("$.storage.audit", "must be sqlite:///PATH, postgresql://..., a plugin's URI or none"))
    _check_access(config, errors)
    for ws_name, ws in config.workspaces.items():
        _check_name(ws_name, f"$.workspaces.{ws_name}", errors)
        for env_name, env in ws.environments.items():
            path = f"$.workspaces.{ws_name}.environments.{env_name}"
            _check_name(env_name, path, errors)
            _check_environment(env, path, providers, errors)
    _check_unique_keys(config, errors)
    if not errors:
        # Rules compile only once references are known to be sound.
        errors.extend(_compile_all_rules(config, rule_functions))
    if errors:
        raise ConfigError(errors)


def _compile_all_rules(config: VmxConfig, rule_functions: RuleFunctions | None) -> Errors:
    from vmx_core.routing.functions import vmx_register_rule_functions
    from vmx_core.routing.rules import RuleFunctions, RuleSet

    functions = rule_functions or RuleFunctions.from_mapping(vmx_register_rule_functions())
    errors: Errors = []
    for ws_name, ws in config.workspaces.items():
        for env_name, env in ws.environments.items():
            for name, res in env.resources.items():
                if not res.routing:
                    continue
                path = f"$.workspaces.{ws_name}.environments.{env_name}.resources.{name}.routing"
                try:
                    RuleSet.compile(res.routing, functions, path)
                except ConfigError as exc:
                    errors.extend(exc.errors)
    return errors


def _check_access(config: VmxConfig, errors: Errors) -> None:
    from vmx_core.security.policies import SEEDED_ROLES

    for name, role in config.roles.items():
        _check_name(name, f"$.roles.{name}", errors)
        if name in SEEDED_ROLES:
            errors.append((f"$.roles.{name}", f"{name!r} is a built-in role and cannot be redefined"))
        for i, st in enumerate(role.statements):
            if not st.actions:
                errors.append((f"$.roles.{name}.statements[{i}].actions", "must not be empty"))
            if not st.resources:
                errors.append((f"$.roles.{name}.statements[{i}].resources", "must not be empty"))
    known = set(config.roles) | set(SEEDED_ROLES)
    for user, ucfg in config.users.items():
        if not valid_user_id(user):
            errors.append((f"$.users.{user}", "a user id is an OIDC sub or email (no '/', at most 320 characters)"))
        for i, role_name in enumerate(ucfg.roles):
            if role_name not in known:
                errors.append((f"$.users.{user}.roles[{i}]", f"unknown role {role_name!r}"))
        for i, ws in enumerate(ucfg.workspaces or []):
            if ws not in config.workspaces:
                errors.append((f"$.users.{user}.workspaces[{i}]", f"unknown workspace {ws!r}"))
    oidc = config.management.oidc
    if oidc is not None:
        if not oidc.issuer.startswith(("https://", "http://")):
            errors.append(("$.management.oidc.issuer", "must be an http(s) URL"))
        for i, alg in enumerate(oidc.algorithms):
            if alg.lower() == "none" or alg.startswith("HS"):
                # Symmetric algorithms would let anyone holding the public JWKS forge tokens.
                errors.append((f"$.management.oidc.algorithms[{i}]", f"{alg!r} is not allowed (asymmetric only)"))
        for i, role_name in enumerate(oidc.default_roles):
            if role_name not in known:
                errors.append((f"$.management.oidc.default_roles[{i}]", f"unknown role {role_name!r}"))


def valid_name(name: str) -> bool:
    """A workspace, environment, connection, resource, key, role or pool name."""
    return _NAME.fullmatch(name) is not None  # fullmatch: `$` alone would let "name\n" through


def valid_user_id(user: str) -> bool:
    """An OIDC ``sub`` or email: 1..320 characters, no ``/``, ``\\``, CR, LF or NUL."""
    return 0 < len(user) <= 320 and not any(c in user for c in "/\\\r\n\x00")


def _check_name(name: str, path: str, errors: Errors) -> None:
    if not valid_name(name):
        errors.append((path, f"{name!r} is not a valid name (letters, digits, '.', '_', '-')"))


def _check_environment(
    env: EnvironmentConfig, path: str, providers: Mapping[str, Provider] | None, errors: Errors
) -> None:
    for name, conn in env.connections.items():
        cpath = f"{path}.connections.{name}"
        _check_name(name, cpath, errors)
        _check_limits(conn.capacity, f"{cpath}.capacity", errors)
        for cred_name, secret in conn.credentials.items():
            if is_encrypted(secret.reveal()):
                # Decrypted when the gateway starts; here only the shape is checked, so that
                # `vmx check` without the key still finds a value mangled by copy and paste.
                try:
                    parse(secret.reveal())
                except CredentialError as exc:
                    errors.append((f"{cpath}.credentials.{cred_name}", str(exc)))
        if providers is None:
            continue
        provider = providers.get(conn.provider)
        if provider is None:
            known = ", ".join(sorted(providers)) or "none"
            errors.append((f"{cpath}.provider", f"unknown provider {conn.provider!r} (installed: {known})"))
            continue
        try:
            structure(conn.options, provider.options_type, path=f"{cpath}.options")
        except ConfigError as exc:
            errors.extend(exc.errors)
    for name, res in env.resources.items():
        _check_name(name, f"{path}.resources.{name}", errors)
        _check_resource(res, f"{path}.resources.{name}", env, errors)
    for name, key in env.api_keys.items():
        _check_name(name, f"{path}.api_keys.{name}", errors)
        _check_key(key, f"{path}.api_keys.{name}", env, errors)
    _check_pools(env, path, errors)


def _check_pools(env: EnvironmentConfig, path: str, errors: Errors) -> None:
    seen_pools: set[str] = set()
    #: resource -> the pool that claimed it first: a request must belong to one pool only.
    owner: dict[str, str] = {}
    for i, pool in enumerate(env.pools):
        ppath = f"{path}.pools[{i}]"
        if pool.name in seen_pools:
            errors.append((f"{ppath}.name", f"duplicate pool name {pool.name!r}"))
        seen_pools.add(pool.name)
        if not 0 <= pool.min_reservation <= pool.max_reservation <= 100:
            errors.append((ppath, "need 0 <= min_reservation <= max_reservation <= 100"))
        if pool.max_wait_ms < 0:
            errors.append((f"{ppath}.max_wait_ms", "must not be negative"))
        for r in pool.resources:
            if r not in env.resources:
                errors.append((f"{ppath}.resources", f"unknown resource {r!r}"))
            elif owner.setdefault(r, pool.name) != pool.name:
                errors.append((f"{ppath}.resources", f"resource {r!r} is already in pool {owner[r]!r}"))
    # Minimums are guarantees: together they must fit in the budget they are shares of.
    # Summed as the decimals they were written as (33.3 + 33.3 + 33.4 is 100, not 100.00000000000001).
    if sum(Fraction(str(p.min_reservation)) for p in env.pools) > 100:
        errors.append((f"{path}.pools", "the min_reservation of all pools add up to more than 100"))


def _check_ref(ref: ModelRef, path: str, env: EnvironmentConfig, errors: Errors) -> None:
    if ref.connection not in env.connections:
        errors.append((f"{path}.connection", f"unknown connection {ref.connection!r}"))
    if not ref.model:
        errors.append((f"{path}.model", "must not be empty"))
    if ref.timeout_ms is not None and ref.timeout_ms <= 0:
        errors.append((f"{path}.timeout_ms", "must be positive"))
    if not 0 <= ref.max_retries <= 10:
        errors.append((f"{path}.max_retries", "must be between 0 and 10"))


def _check_resource(res: ResourceConfig, path: str, env: EnvironmentConfig, errors: Errors) -> None:
    _check_ref(res.model, f"{path}.model", env, errors)
    for i, ref in enumerate(res.fallback):
        _check_ref(ref, f"{path}.fallback[{i}]", env, errors)
    for i, ref in enumerate(res.secondary_models):
        _check_ref(ref, f"{path}.secondary_models[{i}]", env, errors)
    _check_limits(res.capacity, f"{path}.capacity", errors)
    if res.stream_idle_timeout_ms <= 0:
        errors.append((f"{path}.stream_idle_timeout_ms", "must be positive"))
    for i, code in enumerate(res.fallback_on):
        if not 400 <= code <= 499:
            errors.append((f"{path}.fallback_on[{i}]", "must be a 4xx status"))
    names: set[str] = set()
    for i, rule in enumerate(res.routing):
        rpath = f"{path}.routing[{i}]"
        if rule.name in names:
            errors.append((f"{rpath}.name", f"duplicate rule name {rule.name!r}"))
        names.add(rule.name)
        _check_rule(rule, rpath, env, errors)


def _check_rule(rule: RoutingRule, path: str, env: EnvironmentConfig, errors: Errors) -> None:
    outcomes = [x for x in (rule.then, rule.action, rule.split) if x is not None]
    if len(outcomes) != 1:
        errors.append((path, "a rule needs exactly one of then, action or split"))
    if rule.traffic is not None and not 0 <= rule.traffic <= 100:
        errors.append((f"{path}.traffic", "must be between 0 and 100"))
    if rule.then is not None:
        _check_ref(rule.then, f"{path}.then", env, errors)
    for i, choice in enumerate(rule.split or []):
        if choice.weight < 0:
            errors.append((f"{path}.split[{i}].weight", "must not be negative"))
        _check_ref(choice.then, f"{path}.split[{i}].then", env, errors)
    if rule.split is not None and sum(c.weight for c in rule.split) <= 0:
        errors.append((f"{path}.split", "weights must add up to more than 0"))


def _check_key(key: ApiKeyConfig, path: str, env: EnvironmentConfig, errors: Errors) -> None:
    if (key.key is None) == (key.key_sha256 is None):
        errors.append((path, "set exactly one of key_sha256 or key"))
    if key.key_sha256 is not None and not _SHA256.match(key.key_sha256):
        errors.append((f"{path}.key_sha256", "must be 64 lowercase hex characters"))
    for r in key.resources:
        if r != "*" and r not in env.resources:
            errors.append((f"{path}.resources", f"unknown resource {r!r}"))
    for i, o in enumerate(key.allow_overrides):
        if o not in OVERRIDABLE:
            errors.append((f"{path}.allow_overrides[{i}]", f"{o!r} cannot be overridden (one of: {', '.join(sorted(OVERRIDABLE))})"))
    _check_limits(key.capacity, f"{path}.capacity", errors)


def _check_unique_keys(config: VmxConfig, errors: Errors) -> None:
    """Keys are looked up by hash alone, so two keys with one hash would leave one of them
    working in the other's tenant (or a workspace could shadow another's key by copying its
    public ``key_sha256``).  Each copy is reported without naming the other."""
    where: dict[str, list[str]] = {}
    for ws_name, ws in config.workspaces.items():
        for env_name, env in ws.environments.items():
            for name, key in env.api_keys.items():
                path = f"$.workspaces.{ws_name}.environments.{env_name}.api_keys.{name}"
                if key.key_sha256 is not None:
                    where.setdefault(key.key_sha256, []).append(f"{path}.key_sha256")
                elif key.key:
                    where.setdefault(hash_key(key.key.reveal()), []).append(f"{path}.key")
    for paths in where.values():
        if len(paths) > 1:
            errors.extend((p, "another API key has the same key (each key must be unique)") for p in paths)


def _check_limits(limits: list[CapacityLimit], path: str, errors: Errors) -> None:
    for i, lim in enumerate(limits):
        lpath = f"{path}[{i}]"
        if lim.requests is None and lim.tokens is None:
            errors.append((lpath, "set requests, tokens or both"))
        for name in ("requests", "tokens"):
            value = getattr(lim, name)
            if value is not None and value < 0:
                errors.append((f"{lpath}.{name}", "must not be negative"))
        if lim.dimension == "metadata" and not lim.dimension_field:
            errors.append((f"{lpath}.dimension_field", "required when dimension is metadata"))
