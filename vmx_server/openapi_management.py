"""The management, audit and usage API in ``/openapi.json``: every route the shell mounts
under ``/v1/`` (besides the completion endpoints), with exact request and answer schemas."""

from __future__ import annotations

from typing import Any

from vmx_core.audit.query import AGGREGATES, DIMENSIONS, GRANULARITIES, METRICS
from vmx_core.config.models import (
    ApiKeyConfig,
    ConnectionConfig,
    PoolConfig,
    ResourceConfig,
    RoleConfig,
    UserConfig,
)
from vmx_server.openapi_models import NAME, USER_ID, object_schema, ref, schema_of

#: kind -> (its model, or None for workspace/environment; path parameters before {name}).
KINDS: dict[str, tuple[type | None, tuple[str, ...]]] = {
    "workspace": (None, ()),
    "environment": (None, ("workspace",)),
    "ai-connection": (ConnectionConfig, ("workspace", "environment")),
    "ai-resource": (ResourceConfig, ("workspace", "environment")),
    "api-key": (ApiKeyConfig, ("workspace", "environment")),
    "role": (RoleConfig, ()),
    "user": (UserConfig, ()),
}
#: Fields the API never accepts in a body: a key's plaintext is generated, never chosen.
_NOT_SENT = {"api-key": ("key",)}
_SECURITY = [{"bearer": []}]
_JSON = "application/json"

_WHY = {
    400: "invalid body, parameter or If-Match (the message and param name the field path)",
    401: "no valid admin or OIDC token", 403: "not allowed by the caller's roles or workspaces",
    404: "not found (also: a name no object can have)", 409: "the name is taken",
    412: "If-Match does not match the current version", 413: "body over limits.max_body_bytes",
    503: "the config or audit store is unreachable",
}
_ETAG = {"ETag": {"description": "the object's version; send it back as If-Match", "required": True,
                  "schema": {"type": "string", "pattern": '^"[0-9]+"$'}}}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
             "description": "make the write conditional on this version (412 otherwise)",
             "schema": {"type": "string", "pattern": '^(\\*|(W/)?"[0-9]{1,18}")$'}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": _WHY[c], "content": {_JSON: {"schema": ref("OpenAIError")}}} for c in codes}


def _param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or NAME}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {_JSON: {"schema": schema}}


def _bodies(kind: str, defs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(create body, replace body, answer) of a kind, as component references."""
    model = KINDS[kind][0]
    stem = "".join(part.capitalize() for part in kind.split("-"))
    name = USER_ID if kind == "user" else NAME
    if model is None:
        fields = {"description": {"type": ["string", "null"]}}
        send = {"type": "object", "properties": fields, "additionalProperties": False, "required": []}
        answer = {**send, "required": ["description"]}
    else:
        send = object_schema(model, defs, answer=False, exclude=_NOT_SENT.get(kind, ()))
        answer = object_schema(model, defs, answer=True, exclude=("key",) if kind == "api-key" else ())
    create = {**send, "properties": {"name": name, **send["properties"]}, "required": ["name", *send["required"]]}
    replace = {**send, "properties": {"name": {**name, "description": "optional; must equal the URL's"},
                                      **send["properties"]}}
    answer = {**answer, "properties": {"name": {"type": "string"}, **answer["properties"]},
              "required": ["name", *answer["required"]]}
    if kind == "api-key":
        answer["properties"]["key"] = {"type": "string", "pattern": "^vmx_[A-Za-z0-9_-]{43}$",
                                       "description": "the plaintext key: only in the answer to its creation"}
    defs[stem + "Create"], defs[stem + "Replace"], defs[stem] = create, replace, answer
    return ref(stem + "Create"), ref(stem + "Replace"), ref(stem)


def _object_paths(kind: str, defs: dict[str, Any]) -> dict[str, Any]:
    scope = KINDS[kind][1]
    base = "/v1/" + kind + "".join(f"/{{{p}}}" for p in scope)
    params = [_param(p) for p in scope]
    item = [*params, _param("name", USER_ID if kind == "user" else None)]
    create, replace, answer = _bodies(kind, defs)
    one = {"content": _content(answer), "headers": _ETAG}
    listing = _content({"type": "object", "required": ["data"], "additionalProperties": False,
                        "properties": {"data": {"type": "array", "items": answer}}})
    list_errors = (401, 503) if kind == "workspace" else (401, 403, 503) if not scope else (401, 403, 404, 503)
    return {
        base: {
            "get": {"summary": f"list {kind}" + (" (only those the caller may list)" if kind == "workspace" else ""),
                    "parameters": params, "security": _SECURITY,
                    "responses": {"200": {"description": "the objects", "content": listing}, **_errors(*list_errors)}},
            "post": {"summary": f"create a {kind}", "parameters": params, "security": _SECURITY,
                     "requestBody": {"required": True, "content": _content(create)},
                     "responses": {"201": {"description": "created (secrets masked; an API key's plaintext once)",
                                           **one}, **_errors(400, 401, 403, 404, 409, 413, 503)}},
        },
        base + "/{name}": {
            "get": {"summary": f"one {kind}", "parameters": item, "security": _SECURITY,
                    "responses": {"200": {"description": "the object", **one}, **_errors(401, 403, 404, 503)}},
            "put": {"summary": f"replace a {kind}", "parameters": [*item, _IF_MATCH], "security": _SECURITY,
                    "requestBody": {"required": True, "content": _content(replace)},
                    "responses": {"200": {"description": "replaced", **one},
                                  **_errors(400, 401, 403, 404, 412, 413, 503)}},
            "delete": {"summary": f"delete a {kind} (and what it contains)", "parameters": [*item, _IF_MATCH],
                       "security": _SECURITY, "responses": {"204": {"description": "deleted"},
                                                            **_errors(400, 401, 403, 404, 412, 503)}},
        },
    }


def _pool_paths(defs: dict[str, Any]) -> dict[str, Any]:
    params = [_param("workspace"), _param("environment")]
    send = {"type": "object", "required": ["pools"], "additionalProperties": False,
            "properties": {"pools": {"type": "array", "items": schema_of(PoolConfig, defs, answer=False)}}}
    answer = {**send, "properties": {"pools": {"type": "array", "items": schema_of(PoolConfig, defs, answer=True)}}}
    return {"/v1/pool-definition/{workspace}/{environment}": {
        "get": {"summary": "the environment's pools", "parameters": params, "security": _SECURITY,
                "responses": {"200": {"description": "the pools", "content": _content(answer), "headers": _ETAG},
                              **_errors(401, 403, 404, 503)}},
        "put": {"summary": "replace the environment's pools", "parameters": [*params, _IF_MATCH],
                "security": _SECURITY, "requestBody": {"required": True, "content": _content(send)},
                "responses": {"200": {"description": "replaced", "content": _content(answer), "headers": _ETAG},
                              **_errors(400, 401, 403, 404, 412, 413, 503)}},
    }}


def management_paths(defs: dict[str, Any]) -> dict[str, Any]:
    """Every management route; the schemas they use are added to ``defs``."""
    paths: dict[str, Any] = {}
    for kind in KINDS:
        paths.update(_object_paths(kind, defs))
    paths.update(_pool_paths(defs))
    paths.update(_audit_paths(defs))
    return paths


# -- audit and usage --------------------------------------------------------------------------

_TENANT = [_param(p, {"type": "string"}) for p in ("workspace", "environment")]  # rows name any tenant asked for
_MAYBE = ["string", "null"]
_AUDIT_ROW = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "format": "uuid"}, "timestamp": {"type": "string", "format": "date-time"},
        "workspace": {"type": "string"}, "environment": {"type": "string"}, "resource": {"type": _MAYBE},
        "connection": {"type": _MAYBE}, "provider": {"type": _MAYBE}, "model": {"type": _MAYBE},
        "api_key_id": {"type": _MAYBE}, "format": {"type": "string"}, "stream": {"type": "boolean"},
        "status_code": {"type": "integer"}, "error_code": {"type": _MAYBE}, "error_message": {"type": _MAYBE},
        "attempts": {"type": "array", "items": {"type": "object"}}, "routing_rule": {"type": _MAYBE},
        "correlation_id": {"type": _MAYBE}, "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        **{c: {"type": ["integer", "null"]} for c in ("prompt_tokens", "completion_tokens", "total_tokens",
                                                      "cached_tokens", "cache_creation_tokens", "reasoning_tokens")},
        "cost": {"type": ["number", "null"]}, "duration_ms": {"type": "number"}, "ttft_ms": {"type": ["number", "null"]},
        "upstream_ms": {"type": "number"}, "gate_ms": {"type": "number"}, "routing_ms": {"type": "number"},
        "source_ip": {"type": _MAYBE},
    },
}
_AUDIT_ROW["required"] = list(_AUDIT_ROW["properties"])
_WHEN = {"type": "string", "description": "ISO 8601, or a duration ago (30m, 24h, 7d, 2w); empty: not set"}
_MAYBE_WHEN = {**_WHEN, "type": ["string", "null"]}
_LIST = {"type": "string", "description": "one value, or several separated by commas (any of them)"}
_STATUS = {**_LIST, "pattern": "^[0-9]{1,9}(,[0-9]{1,9})*$"}
_DIMENSION = {"anyOf": [{"enum": list(DIMENSIONS)}, {"type": "string", "pattern": "^metadata\\.[A-Za-z0-9_-]{1,64}$"}]}
_FILTER_VALUE = {"anyOf": [{"type": ["string", "integer"]},
                           {"type": "array", "minItems": 1, "items": {"type": ["string", "integer"]}}]}
_METRICS = {"type": "object", "minProperties": 1, "propertyNames": {"enum": list(METRICS)},
            "additionalProperties": {"enum": list(AGGREGATES)}}
_USAGE_QUERY = {
    "type": "object", "additionalProperties": False, "not": {"required": ["metrics", "agg"]},
    "properties": {
        "granularity": {"enum": list(GRANULARITIES)}, "metrics": _METRICS,
        "agg": {**_METRICS, "description": "VM-X's name for metrics"},
        "dimensions": {"type": "array", "items": _DIMENSION},
        "filter": {"type": "object", "properties": {"start": _MAYBE_WHEN, "end": _MAYBE_WHEN},
                   "propertyNames": {"anyOf": [{"enum": ["start", "end", *DIMENSIONS]}, _DIMENSION]},
                   "additionalProperties": _FILTER_VALUE},
    },
}
_USAGE_ANSWER = {
    "type": "object", "additionalProperties": False,
    "required": ["granularity", "start", "end", "dimensions", "metrics", "data"],
    "properties": {
        "granularity": {"enum": list(GRANULARITIES)}, "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"}, "dimensions": {"type": "array", "items": {"type": "string"}},
        "metrics": {"type": "object", "additionalProperties": {"enum": list(AGGREGATES)}},
        "data": {"type": "array", "items": {
            "type": "object", "required": ["bucket"], "properties": {"bucket": {"type": "string"}},
            "additionalProperties": {"type": ["string", "number", "null"]}}},
    },
}


def _audit_paths(defs: dict[str, Any]) -> dict[str, Any]:
    defs["AuditRow"], defs["UsageQuery"], defs["UsageReport"] = _AUDIT_ROW, _USAGE_QUERY, _USAGE_ANSWER
    query = [{"name": n, "in": "query", "required": False, "schema": s} for n, s in [
        ("start", _WHEN), ("end", _WHEN), ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ("cursor", {"type": "string", "description": "next_cursor of the previous page"}),
        ("correlation_id", {"type": "string"}), ("resource", _LIST), ("connection", _LIST), ("model", _LIST),
        ("provider", _LIST), ("api_key", _LIST), ("status_code", _STATUS),
        ("status", {**_STATUS, "description": "status_code's other name: send one of them"}),
    ]]
    page = {"type": "object", "required": ["data", "next_cursor"], "additionalProperties": False,
            "properties": {"data": {"type": "array", "items": ref("AuditRow")}, "next_cursor": {"type": _MAYBE}}}
    # Open when neither VMX_ADMIN_TOKEN nor OIDC is configured; otherwise like the management API.
    security = [{"bearer": []}, {}]
    return {
        "/v1/request-audit/{workspace}/{environment}": {"get": {
            "summary": "audit rows, newest first (also metadata.KEY=VALUE filters)", "parameters": [*_TENANT, *query],
            "security": security, "responses": {"200": {"description": "one page", "content": _content(page)},
                                                **_errors(400, 401, 403, 503)}}},
        "/v1/request-audit/{workspace}/{environment}/{id}/payload": {"get": {
            "summary": "the stored bodies of one request (audit.payloads: redacted or full)",
            "parameters": [*_TENANT, {"name": "id", "in": "path", "required": True,
                                      "schema": {"type": "string", "format": "uuid"}}],
            "security": security, "responses": {"200": {"description": "client, upstream and response bodies",
                                                        "content": _content({"type": "object"})},
                                                **_errors(400, 401, 403, 404, 503)}}},
        "/v1/request-usage/{workspace}/{environment}": {"post": {
            "summary": "usage aggregated per time bucket and dimensions", "parameters": _TENANT,
            "security": security, "requestBody": {"required": False, "content": _content(ref("UsageQuery"))},
            "responses": {"200": {"description": "the report", "content": _content(ref("UsageReport"))},
                          **_errors(400, 401, 403, 413, 503)}}},
    }
