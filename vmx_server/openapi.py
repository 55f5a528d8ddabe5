"""``/openapi.json``: the gateway's own endpoints.  Request and response bodies of the
completion endpoints are OpenAI's and Anthropic's; this document describes what vmx adds."""

from __future__ import annotations

from typing import Any

import vmx_core

_ENVELOPE = {
    "type": "object",
    "description": "The vmx envelope (DESIGN §4); removed before the body goes upstream.",
    "additionalProperties": False,
    "properties": {
        "correlationId": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "timeoutMs": {"type": "number", "exclusiveMinimum": 0},
        "providerArgs": {"type": "object"},
        "secondaryModelIndex": {"type": "integer", "minimum": 0},
        "resourceConfigOverrides": {"type": "object"},
    },
}

_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}

_ANTHROPIC_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}

_PARAMS = [
    {"name": "workspace", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "environment", "in": "path", "required": True, "schema": {"type": "string"}},
]


def _completion(summary: str, error_schema: str) -> dict[str, Any]:
    errors = {
        str(code): {"description": why, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{error_schema}"}}}}
        for code, why in [
            (400, "invalid request, or blocked by a routing rule"),
            (401, "missing or unknown API key"),
            (403, "the key may not call this resource"),
            (404, "unknown workspace, environment or resource"),
            (413, "body over limits.max_body_bytes"),
            (429, "capacity exhausted"),
            (502, "every upstream leg failed"),
            (504, "the request deadline passed"),
        ]
    }
    return {
        "post": {
            "summary": summary,
            "parameters": _PARAMS,
            "security": [{"bearer": []}, {"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["model"],
                            "properties": {
                                "model": {"type": "string", "description": "the resource name"},
                                "stream": {"type": "boolean"},
                                "vmx": {"$ref": "#/components/schemas/VmxEnvelope"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "the provider's answer (JSON, or text/event-stream when stream is true)",
                    "content": {"application/json": {}, "text/event-stream": {}},
                },
                **errors,
            },
        }
    }


_KINDS = {  # kind -> path parameters before {name}
    "workspace": [], "environment": ["workspace"], "ai-connection": ["workspace", "environment"],
    "ai-resource": ["workspace", "environment"], "api-key": ["workspace", "environment"], "role": [], "user": [],
}


def _param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _mgmt_errors(*codes: int) -> dict[str, Any]:
    why = {400: "invalid body (the message and param name the field path)", 401: "no valid admin or OIDC token",
           403: "not allowed by the caller's roles or workspaces", 404: "not found", 409: "the name is taken",
           412: "If-Match does not match the current version", 503: "the config store is unreachable"}
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}}
    return {str(c): {"description": why[c], "content": ref} for c in codes}


def _management_paths() -> dict[str, Any]:
    obj = {"application/json": {"schema": {"$ref": "#/components/schemas/ManagedObject"}}}
    body = {"required": True, "content": obj}
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
    sec = [{"bearer": []}]
    paths: dict[str, Any] = {}
    for kind, scope in _KINDS.items():
        base = "/v1/" + kind + "".join(f"/{{{p}}}" for p in scope)
        params = [_param(p) for p in scope]
        paths[base] = {
            "get": {"summary": f"list {kind}", "parameters": params, "security": sec,
                    "responses": {"200": {"description": "the objects", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"data": {"type": "array", "items": {"type": "object"}}}}}}},
                        **_mgmt_errors(401, 403, 404, 503)}},
            "post": {"summary": f"create a {kind}", "parameters": params, "security": sec, "requestBody": body,
                     "responses": {"201": {"description": "created (secrets masked; an API key's plaintext once)",
                                           "content": obj}, **_mgmt_errors(400, 401, 403, 404, 409, 503)}},
        }
        item = [*params, _param("name")]
        paths[base + "/{name}"] = {
            "get": {"summary": f"one {kind}", "parameters": item, "security": sec,
                    "responses": {"200": {"description": "the object; ETag is its version", "content": obj},
                                  **_mgmt_errors(401, 403, 404, 503)}},
            "put": {"summary": f"replace a {kind}", "parameters": [*item, if_match], "security": sec,
                    "requestBody": body,
                    "responses": {"200": {"description": "replaced", "content": obj},
                                  **_mgmt_errors(400, 401, 403, 404, 412, 503)}},
            "delete": {"summary": f"delete a {kind} (and what it contains)", "parameters": [*item, if_match],
                       "security": sec, "responses": {"204": {"description": "deleted"},
                                                      **_mgmt_errors(400, 401, 403, 404, 412, 503)}},
        }
    pools = [_param("workspace"), _param("environment")]
    pool_body = {"application/json": {"schema": {"type": "object", "required": ["pools"],
                                                 "properties": {"pools": {"type": "array", "items": {"type": "object"}}}}}}
    paths["/v1/pool-definition/{workspace}/{environment}"] = {
        "get": {"summary": "the environment's pools", "parameters": pools, "security": sec,
                "responses": {"200": {"description": "the pools", "content": pool_body}, **_mgmt_errors(401, 403, 404, 503)}},
        "put": {"summary": "replace the environment's pools", "parameters": [*pools, if_match], "security": sec,
                "requestBody": {"required": True, "content": pool_body},
                "responses": {"200": {"description": "replaced", "content": pool_body},
                              **_mgmt_errors(400, 401, 403, 404, 412, 503)}},
    }
    return paths


def openapi_document() -> dict[str, Any]:
    base = "/v1/completion/{workspace}/{environment}"
    return {
        "openapi": "3.1.0",
        "info": {"title": "vmx AI gateway", "version": getattr(vmx_core, "__version__", "0.1.0")},
        "paths": {
            f"{base}/chat/completions": _completion("OpenAI Chat Completions", "OpenAIError"),
            f"{base}/responses": _completion("OpenAI Responses", "OpenAIError"),
            f"{base}/anthropic/messages": _completion("Anthropic Messages", "AnthropicError"),
            f"{base}/anthropic/v1/messages": _completion("Anthropic Messages (SDK path)", "AnthropicError"),
            f"{base}/models": {
                "get": {
                    "summary": "The resources this API key may call",
                    "parameters": _PARAMS,
                    "security": [{"bearer": []}, {"apiKey": []}],
                    "responses": {"200": {"description": "an OpenAI model list"}},
                }
            },
            "/healthz": {"get": {"summary": "process alive", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {
                "get": {
                    "summary": "config loaded and stores reachable",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "starting or draining"}},
                }
            },
            "/-/plugins": {"get": {"summary": "loaded plugins and their hooks", "responses": {"200": {"description": "ok"}}}},
            "/-/metrics": {"get": {"summary": "audit counters: queued, written, spooled, replayed",
                                   "responses": {"200": {"description": "ok"}}}},
            **_management_paths(),
        },
        "components": {
            "schemas": {
                "VmxEnvelope": _ENVELOPE, "OpenAIError": _OPENAI_ERROR, "AnthropicError": _ANTHROPIC_ERROR,
                "ManagedObject": {
                    "type": "object", "required": ["name"],
                    "description": "the config file's object of this kind plus its name (docs/configuration.md)",
                    "properties": {"name": {"type": "string"}},
                },
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
