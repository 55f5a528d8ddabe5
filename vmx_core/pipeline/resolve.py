"""The stages before any upstream call: authenticate, resolve the resource (with the
overrides the key is granted), parse and check the body, build the upstream body."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import time
from collections.abc import Mapping
from typing import Any

from vmx_core.config.convert import structure, unstructure
from vmx_core.config.models import ModelRef, ResourceConfig
from vmx_core.config.validate import OVERRIDABLE
from vmx_core.errors import (
    AuthenticationFailed,
    ConfigError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from vmx_core.pipeline.context import RequestContext
from vmx_core.request import check_common_fields, parse_body, parse_envelope
from vmx_core.runtime import Runtime
from vmx_core.security.apikeys import ApiKey


def authenticate(rt: Runtime, api_key: str | None, workspace: str, environment: str) -> ApiKey:
    """DESIGN §3: 401 for a missing/unknown/disabled key, before anything else is revealed."""
    if not api_key:
        raise AuthenticationFailed("missing API key: send Authorization: Bearer KEY or x-api-key: KEY")
    key = rt.keys.get(hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).hexdigest())
    if key is None or not key.usable(dt.datetime.now(dt.UTC)):
        raise AuthenticationFailed("invalid API key")
    if (workspace, environment) not in rt.tenants:
        raise NotFound(f"workspace/environment {workspace}/{environment} not found")
    if key.workspace != workspace or key.environment != environment:
        raise PermissionDenied("this API key is not valid for this workspace/environment")
    return key


def resolve(rt: Runtime, ctx: RequestContext) -> None:
    req = ctx.request
    t = ctx.timings.start
    ctx.key = authenticate(rt, req.api_key, req.workspace, req.environment)
    ctx.tenant = rt.tenants[(req.workspace, req.environment)]
    t = ctx.timings.mark("auth", t)

    body = parse_body(req.body, rt.config.limits.max_body_bytes)
    ctx.envelope = parse_envelope(body.pop("vmx", None), req.headers)
    check_common_fields(body, req.format)
    ctx.body = body
    ctx.stream = bool(body.get("stream"))
    t = ctx.timings.mark("parse", t)

    name = body["model"]
    resource = ctx.tenant.resources.get(name)
    if resource is None:
        raise NotFound(f"resource {name!r} not found", param="model")
    if not ctx.key.may_call(name):
        raise PermissionDenied(f"this API key may not call resource {name!r}", param="model")
    ctx.resource_name = name
    overrides = ctx.envelope.resource_overrides
    ctx.resource = apply_overrides(resource, overrides, ctx) if overrides else resource

    cap_ms = rt.config.limits.max_timeout_ms
    wanted = ctx.envelope.timeout_ms
    ctx.deadline = ctx.timings.start + min(wanted if wanted is not None else cap_ms, cap_ms) / 1000
    ctx.timings.mark("resolve", t)


def apply_overrides(resource: ResourceConfig, overrides: Mapping[str, Any], ctx: RequestContext) -> ResourceConfig:
    """Deep-merge ``resourceConfigOverrides`` (DESIGN §4 Fix): only granted fields, and every
    model reference must stay on a connection of this environment."""
    assert ctx.key is not None and ctx.tenant is not None
    for field_name in overrides:
        if field_name not in ctx.key.allow_overrides:
            why = "may never be overridden" if field_name not in OVERRIDABLE else "is not granted to this API key"
            raise PermissionDenied(
                f"vmx.resourceConfigOverrides.{field_name}: {why}",
                param=f"vmx.resourceConfigOverrides.{field_name}",
            )
    merged = _deep_merge(unstructure(resource), overrides)
    try:
        result = structure(merged, ResourceConfig, path="vmx.resourceConfigOverrides")
    except ConfigError as exc:
        path, message = exc.errors[0]
        raise InvalidRequest(f"{path.removeprefix('$.')}: {message}", param=path) from None
    for ref in _refs(result):
        if ref.connection not in ctx.tenant.connections:
            raise InvalidRequest(
                f"vmx.resourceConfigOverrides: unknown connection {ref.connection!r}",
                param="vmx.resourceConfigOverrides",
            )
    return result


def _refs(resource: ResourceConfig) -> list[ModelRef]:
    refs = [resource.model, *resource.fallback, *resource.secondary_models]
    for rule in resource.routing:
        if rule.then is not None:
            refs.append(rule.then)
        refs.extend(choice.then for choice in rule.split or [])
    return refs


def _deep_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _deep_merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


def upstream_body(ctx: RequestContext, ref: ModelRef) -> dict[str, Any]:
    """``default_args < client body < providerArgs``, then the provider's model id."""
    assert ctx.body is not None and ctx.envelope is not None
    if ref.default_args:
        body = {**ref.default_args, **ctx.body}
    else:
        body = dict(ctx.body)
    if ctx.envelope.provider_args:
        body.update(ctx.envelope.provider_args)
    body["model"] = ref.model
    return body


def now() -> float:
    return time.perf_counter()
