"""The management API (DESIGN §2) on a real `vmx serve` with the file store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import KEY
from tests.e2e.conftest import e2e_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess
from vmx_core.security.sodium import generate_key

ADMIN = "admin-token-for-tests-0123456789"
PLAIN = "sk-managed-SECRET-abcdefghijklmnop"


@pytest.fixture
async def managed(upstream: FakeOpenAI, vmx_factory: Any) -> VmxProcess:
    """A gateway with an admin token and an encryption key."""
    config = e2e_config(upstream)
    config["encryption"] = {"provider": "libsodium", "key": generate_key()}
    proc: VmxProcess = await vmx_factory(config, {"VMX_ADMIN_TOKEN": ADMIN})
    return proc


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session."""
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
               token: str | None = ADMIN, **headers: str) -> tuple[int, Any, dict[str, str]]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, url, json=body, headers=headers) as resp:
        data = await resp.json(content_type=None) if resp.status != 204 else None
        return resp.status, data, {k.lower(): v for k, v in resp.headers.items()}


async def chat(http: aiohttp.ClientSession, proc: VmxProcess, model: str, key: str = KEY) -> tuple[int, Any]:
    async with http.post(proc.base_url() + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_resource_crud_with_etags_changes_routing(managed: VmxProcess, upstream: FakeOpenAI,
                                                        http: aiohttp.ClientSession) -> None:
    """Create (201), read with an ETag, a stale If-Match (412), update, route by it, delete (404 after)."""
    url = managed.url + "/v1/ai-resource/acme/prod"
    status, body, _ = await call(http, "POST", url, {"name": "summary", "model": {"connection": "up", "model": "gpt-a"}})
    assert status == 201 and body["name"] == "summary" and body["model"]["model"] == "gpt-a"
    status, body, headers = await call(http, "GET", url + "/summary")
    etag = headers["etag"]
    assert status == 200 and body["fallback"] == []
    assert (await chat(http, managed, "summary"))[0] == 200 and upstream.requests[-1]["body"]["model"] == "gpt-a"
    changed = {"name": "summary", "model": {"connection": "up", "model": "gpt-b"}}
    status, _, new_headers = await call(http, "PUT", url + "/summary", changed, **{"If-Match": etag})
    assert status == 200 and new_headers["etag"] != etag
    status, body, _ = await call(http, "PUT", url + "/summary", changed, **{"If-Match": etag})
    assert status == 412 and body["error"]["code"] == "precondition_failed"
    assert (await chat(http, managed, "summary"))[0] == 200 and upstream.requests[-1]["body"]["model"] == "gpt-b"
    status, _, _ = await call(http, "DELETE", url + "/summary", **{"If-Match": new_headers["etag"]})
    assert status == 204
    assert (await call(http, "GET", url + "/summary"))[0] == 404
    assert (await chat(http, managed, "summary"))[0] == 404
    status, body, _ = await call(http, "GET", url)
    assert [r["name"] for r in body["data"]] == ["chat"]


async def test_validation_errors_name_the_field_path(managed: VmxProcess, http: aiohttp.ClientSession) -> None:
    """Type errors and broken references come back as 400 with the path inside the body."""
    url = managed.url + "/v1/ai-resource/acme/prod"
    status, body, _ = await call(http, "POST", url, {"name": "x", "model": {"connection": "nowhere", "model": "m"}})
    assert status == 400 and body["error"]["param"] == "$.model.connection"
    assert "unknown connection 'nowhere'" in body["error"]["message"]
    status, body, _ = await call(http, "POST", url, {"name": "x", "model": {"connection": "up", "model": "m",
                                                                            "timeout_ms": "soon"}, "bogus": 1})
    assert status == 400
    assert "$.model.timeout_ms" in body["error"]["message"] and "$.bogus: unknown key" in body["error"]["message"]
    status, body, _ = await call(http, "DELETE", managed.url + "/v1/ai-connection/acme/prod/up")
    assert status == 400 and "resources.chat.model.connection" in body["error"]["message"]


async def test_credentials_are_encrypted_and_only_ever_shown_masked(managed: VmxProcess, upstream: FakeOpenAI,
                                                                   http: aiohttp.ClientSession) -> None:
    """A plaintext credential is stored encrypted, answered masked, and still reaches the upstream."""
    url = managed.url + "/v1/ai-connection/acme/prod"
    conn = {"name": "second", "provider": "openai", "credentials": {"api_key": PLAIN},
            "options": {"base_url": upstream.base_url}}
    status, body, _ = await call(http, "POST", url, conn)
    assert status == 201 and body["credentials"]["api_key"] == "sk-...mnop"
    _, got, _ = await call(http, "GET", url + "/second")
    assert got["credentials"]["api_key"] == "sk-...mnop"
    got["description"] = "masked value sent back: the stored secret is kept"
    assert (await call(http, "PUT", url + "/second", got))[0] == 200
    await call(http, "POST", managed.url + "/v1/ai-resource/acme/prod",
               {"name": "via-second", "model": {"connection": "second", "model": "gpt-x"}})
    assert (await chat(http, managed, "via-second"))[0] == 200
    assert upstream.requests[-1]["headers"]["Authorization"] == f"Bearer {PLAIN}"
    everything = str(await call(http, "GET", url))
    assert PLAIN not in everything and PLAIN not in managed.output()


async def test_api_keys_are_shown_once_and_revocation_is_immediate(managed: VmxProcess,
                                                                  http: aiohttp.ClientSession) -> None:
    """The created key's plaintext comes back once; disabling it makes the next call 401."""
    url = managed.url + "/v1/api-key/acme/prod"
    status, body, _ = await call(http, "POST", url, {"name": "svc", "resources": ["chat"]})
    assert status == 201 and body["key"].startswith("vmx_") and len(body["key"]) == 47
    key = body["key"]
    _, got, _ = await call(http, "GET", url + "/svc")
    assert "key" not in got and got["key_sha256"] == body["key_sha256"]
    assert (await call(http, "POST", url, {"name": "bad", "key": "vmx_chosen"}))[0] == 400
    assert (await chat(http, managed, "chat", key))[0] == 200
    got["enabled"] = False
    assert (await call(http, "PUT", url + "/svc", got))[0] == 200
    assert (await chat(http, managed, "chat", key))[0] == 401


async def test_the_admin_token_is_required(managed: VmxProcess, http: aiohttp.ClientSession) -> None:
    """No token or a wrong one: 401 on every management route, and nothing changes."""
    url = managed.url + "/v1/workspace"
    assert (await call(http, "GET", url, token=None))[0] == 401
    assert (await call(http, "POST", url, {"name": "evil"}, token="wrong"))[0] == 401
    status, body, _ = await call(http, "GET", url)
    assert status == 200 and [w["name"] for w in body["data"]] == ["acme"]


async def test_management_is_disabled_without_any_credential(upstream: FakeOpenAI, vmx_factory: Any,
                                                             http: aiohttp.ClientSession) -> None:
    """Without VMX_ADMIN_TOKEN or OIDC, the management API refuses everyone."""
    proc = await vmx_factory(e2e_config(upstream), {"VMX_ADMIN_TOKEN": ""})
    status, body, _ = await call(http, "GET", proc.url + "/v1/workspace", token="anything")
    assert status == 401 and "disabled" in body["error"]["message"]


def test_openapi_describes_every_management_route() -> None:
    """Each management route and method the server mounts is in /openapi.json, and no other."""
    from tests.conftest import base_config
    from vmx_core import Gateway
    from vmx_core.config import config_from_dict
    from vmx_core.security.admin import AdminAuth
    from vmx_server.openapi import openapi_document
    from vmx_server.routes.management import ManagementRoutes

    gw = Gateway.from_config(config_from_dict(base_config(), environ={}))
    mounted = {(r.path, m.lower()) for r in ManagementRoutes(gw, AdminAuth()).routes() for m in (r.methods or ())
               if m != "HEAD"}
    doc = openapi_document()["paths"]
    described = {(p, m) for p, ops in doc.items() for m in ops
                 if p.startswith("/v1/") and not p.startswith(("/v1/completion", "/v1/request-"))}
    assert len(mounted) == 7 * 5 + 2
    assert mounted == described


async def test_sighup_reloads_the_file(managed: VmxProcess, http: aiohttp.ClientSession) -> None:
    """With the file store, SIGHUP swaps in the edited file: a resource added there answers."""
    import signal

    import yaml

    config = yaml.safe_load(managed.config_path.read_text())
    config["workspaces"]["acme"]["environments"]["prod"]["resources"]["added"] = {
        "model": {"connection": "m", "model": "mock-1"}}
    managed.config_path.write_text(yaml.safe_dump(config))
    assert (await chat(http, managed, "added"))[0] == 404
    assert managed.proc is not None
    managed.proc.send_signal(signal.SIGHUP)
    await managed.wait_for_output(lambda line: "config_reloaded" in line)
    assert (await chat(http, managed, "added"))[0] == 200


async def test_oidc_roles_and_workspace_membership_are_enforced(upstream: FakeOpenAI, vmx_factory: Any,
                                                                http: aiohttp.ClientSession) -> None:
    """A read-only OIDC user may read but not write; a workspace member cannot see another workspace."""
    from tests.fakes.identity import FakeIdentityProvider

    idp = FakeIdentityProvider()
    await idp.start()
    try:
        config = e2e_config(upstream)
        config["workspaces"]["other"] = {"environments": {"prod": {}}}
        config["management"] = {"oidc": {"issuer": idp.issuer, "audience": idp.audience}}
        config["users"] = {"reader": {"roles": ["read-only"]},
                           "member": {"roles": ["admin"], "workspaces": ["acme"]}}
        proc = await vmx_factory(config, {"VMX_ADMIN_TOKEN": ""})
        reader, member = idp.token(sub="reader"), idp.token(sub="member")
        res = proc.url + "/v1/ai-resource/acme/prod"
        assert (await call(http, "GET", res, token=reader))[0] == 200
        status, body, _ = await call(http, "POST", res, {"name": "x", "model": {"connection": "m", "model": "m"}},
                                     token=reader)
        assert status == 403 and "ai-resource:create" in body["error"]["message"]
        assert (await call(http, "GET", proc.url + "/v1/environment/other", token=member))[0] == 403
        assert (await call(http, "GET", proc.url + "/v1/environment/acme", token=member))[0] == 200
        _, listed, _ = await call(http, "GET", proc.url + "/v1/workspace", token=member)
        assert [w["name"] for w in listed["data"]] == ["acme"]
        assert (await call(http, "GET", proc.url + "/v1/role", token=member))[0] == 403
        assert (await call(http, "GET", res, token=idp.token(sub="reader", expires_in=-300)))[0] == 401
    finally:
        await idp.stop()
