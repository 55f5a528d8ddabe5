"""``/openapi.json``: the gateway's own endpoints.  Request and response bodies of the
completion endpoints are OpenAI's and Anthropic's; this document describes what vmx adds."""

from __future__ import annotations

from typing import Any

import vmx_core
from vmx_server.openapi_management import management_paths

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


def openapi_document() -> dict[str, Any]:
    base = "/v1/completion/{workspace}/{environment}"
    schemas: dict[str, Any] = {"VmxEnvelope": _ENVELOPE, "OpenAIError": _OPENAI_ERROR, "AnthropicError": _ANTHROPIC_ERROR}
    management = management_paths(schemas)
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
            **management,
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
