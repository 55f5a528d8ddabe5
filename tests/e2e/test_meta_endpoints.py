"""Operational endpoints: health, readiness, plugins and the OpenAPI document."""

from __future__ import annotations

import aiohttp
from openapi_schema_validator import OAS31Validator

from tests.e2e.conftest import UPSTREAM_SECRET
from tests.fakes.server import VmxProcess


async def get(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def test_health_and_readiness(vmx: VmxProcess) -> None:
    """/healthz says the process is alive and /readyz that the gateway is started."""
    assert await get(vmx.url + "/healthz") == (200, {"status": "ok"})
    assert await get(vmx.url + "/readyz") == (200, {"status": "ready"})


async def test_answers_carry_no_server_software_banner(vmx: VmxProcess) -> None:
    """No ``server`` header names the software and version behind the gateway."""
    async with aiohttp.ClientSession() as http, http.get(vmx.url + "/healthz") as resp:
        assert resp.status == 200 and "server" not in resp.headers and "date" in resp.headers


async def test_plugins_lists_providers_and_hooks_but_no_secrets(vmx: VmxProcess) -> None:
    """/-/plugins names every loaded plugin with its hooks, and never a credential."""
    status, body = await get(vmx.url + "/-/plugins")
    assert status == 200
    assert {"openai", "groq", "perplexity", "gemini", "mock"} <= set(body["providers"])
    by_name = {p["name"]: p for p in body["plugins"]}
    assert "vmx_register_providers" in by_name["openai"]["hooks"]
    assert by_name["openai"]["version"]
    assert UPSTREAM_SECRET not in str(body)


async def test_openapi_document_describes_the_endpoints_and_real_error_bodies(vmx: VmxProcess) -> None:
    """/openapi.json lists every endpoint, and an actual error body validates against its schema."""
    status, doc = await get(vmx.url + "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    base = "/v1/completion/{workspace}/{environment}"
    for path in ("/chat/completions", "/responses", "/anthropic/messages", "/anthropic/v1/messages", "/models"):
        assert base + path in doc["paths"]
    async with aiohttp.ClientSession() as http:
        async with http.post(vmx.base_url() + "/chat/completions", json={"model": "chat"}) as resp:
            openai_error = await resp.json()
        async with http.post(vmx.base_url() + "/anthropic/v1/messages", json={"model": "chat"}) as resp:
            anthropic_error = await resp.json()
    schemas = doc["components"]["schemas"]
    OAS31Validator(schemas["OpenAIError"]).validate(openai_error)
    OAS31Validator(schemas["AnthropicError"]).validate(anthropic_error)
    OAS31Validator(schemas["VmxEnvelope"]).validate({"correlationId": "x", "metadata": {"k": "v"}, "secondaryModelIndex": 0})
