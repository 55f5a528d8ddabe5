"""Two tenants, `alpha` (the caller's) and `beta` (the target), on a Postgres config store.

Both have the same object names (connection `m`, resource `chat`, key `app`, pool `p`) so a
leak cannot hide behind a name: everything of beta carries :data:`MARK` (descriptions, a
credential, a pool name, audit correlation ids), and no answer to an alpha principal may
contain it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from typing import Any

import aiohttp
from attrs import frozen

from tests.audit.conftest import make_row
from tests.services.postgres import PostgresServer
from vmx_core.audit.rows import iso
from vmx_core.audit.store import open_store
from vmx_core.config import config_from_dict
from vmx_core.plugins import Plugins
from vmx_core.security.policies import ACTIONS
from vmx_core.security.sodium import generate_key
from vmx_core.store.tools import import_file

A, B, NOWHERE = "alpha", "beta", "gamma"
MARK = "beta-private-7f3a"
ADMIN = "isolation-admin-token-0123456789"
KEYS = {A: "vmx_alpha_" + "a" * 37, B: "vmx_beta_" + "b" * 38}
#: When the seeded audit rows happened, and the usage window that holds them all.
SEEDED_AT = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
WINDOW = {"start": iso(SEEDED_AT - dt.timedelta(hours=1)), "end": iso(SEEDED_AT + dt.timedelta(hours=1))}
AUDIT_ROWS = 3


def tenant(ws: str) -> dict[str, Any]:
    """A workspace whose every object says which tenant it belongs to."""
    tag = MARK if ws == B else f"{ws}-own"
    return {"description": tag, "environments": {"prod": {
        "description": tag,
        "connections": {"m": {"provider": "mock", "description": tag, "credentials": {"api_key": f"sk-{tag}-0123456789"}}},
        "resources": {"chat": {"model": {"connection": "m", "model": f"model-{tag}"}, "description": tag}},
        "api_keys": {"app": {"key_sha256": hashlib.sha256(KEYS[ws].encode()).hexdigest(), "resources": ["*"],
                             "description": tag}},
        "pools": [{"name": f"p-{tag}", "rank": 1, "min_reservation": 0, "max_reservation": 100, "resources": ["chat"]}],
    }}}


def may(action: str) -> str:
    """The user allowed ``action`` (on everything) and nothing else."""
    return f"may:{action}"


def may_not(action: str) -> str:
    """The user allowed everything but ``action``."""
    return f"may-not:{action}"


def _action_roles() -> tuple[dict[str, Any], dict[str, Any]]:
    roles: dict[str, Any] = {}
    users: dict[str, Any] = {}
    for action in ACTIONS:
        only, all_but = "only." + action.replace(":", "."), "all-but." + action.replace(":", ".")
        roles[only] = {"statements": [{"effect": "allow", "actions": [action], "resources": ["*"]}]}
        roles[all_but] = {"statements": [{"effect": "allow", "actions": ["*"], "resources": ["*"]},
                                         {"effect": "deny", "actions": [action], "resources": ["*"]}]}
        users[may(action)], users[may_not(action)] = {"roles": [only]}, {"roles": [all_but]}
    return roles, users


def world_config(audit_uri: str, issuer: str, audience: str) -> dict[str, Any]:
    """`alice` is a member of alpha with the admin role; `bob` has a role allowing everything in
    alpha and is no member; `zed` belongs to beta; and per action, :func:`may` and :func:`may_not`."""
    roles, users = _action_roles()
    return {
        "storage": {"audit": audit_uri, "config": "database"},
        "encryption": {"provider": "libsodium", "key": generate_key()},
        "management": {"oidc": {"issuer": issuer, "audience": audience}},
        "roles": {"alpha-admin": {"description": "everything in alpha", "statements": [
            {"effect": "allow", "actions": ["*"], "resources": [f"workspace:{A}", f"workspace:{A}:*"]}]}, **roles},
        "users": {"alice": {"roles": ["admin"], "workspaces": [A]}, "bob": {"roles": ["alpha-admin"]},
                  "zed": {"roles": ["admin"], "workspaces": [B], "description": MARK}, **users},
        "workspaces": {A: tenant(A), B: tenant(B)},
    }


async def seed(postgres: PostgresServer, issuer: str, audience: str) -> dict[str, Any]:
    """A fresh database holding the world (config store and audit rows); its config file."""
    if not postgres.running:
        postgres.start()
    raw = world_config(postgres.create_database(), issuer, audience)
    config = config_from_dict(raw, environ={})
    await import_file(config, config, Plugins.load())  # seals the credentials; migrates the database
    store = open_store(raw["storage"]["audit"])
    await store.connect()
    try:
        await store.write([make_row(workspace=ws, environment="prod", timestamp=iso(SEEDED_AT + dt.timedelta(seconds=i)),
                                    correlation_id=f"{MARK if ws == B else ws}-{i}", metadata={"tenant": ws})
                           for ws in (A, B) for i in range(AUDIT_ROWS)])
    finally:
        await store.aclose()
    return raw


@frozen
class Call:
    """One request: ``path`` is concrete (``/v1/ai-resource/beta/prod/chat``)."""

    method: str
    path: str
    body: Any = None
    if_match: str | None = None


async def send(http: aiohttp.ClientSession, base: str, call: Call, token: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if call.if_match is not None:
        headers["If-Match"] = call.if_match
    async with http.request(call.method, base + call.path, json=call.body, headers=headers) as resp:
        return resp.status, await resp.text()


async def snapshot(http: aiohttp.ClientSession, base: str) -> list[tuple[int, str]]:
    """Everything of beta, and every global object, as the admin sees it (ETags included)."""
    reads = [Call("GET", p) for p in (
        "/v1/workspace", f"/v1/workspace/{B}", f"/v1/environment/{B}", f"/v1/environment/{B}/prod",
        f"/v1/ai-connection/{B}/prod", f"/v1/ai-connection/{B}/prod/m", f"/v1/ai-resource/{B}/prod",
        f"/v1/ai-resource/{B}/prod/chat", f"/v1/api-key/{B}/prod", f"/v1/api-key/{B}/prod/app",
        f"/v1/pool-definition/{B}/prod", "/v1/role", "/v1/user", f"/v1/request-audit/{B}/prod?limit=1000")]
    reads.append(Call("POST", f"/v1/request-usage/{B}/prod", {"dimensions": ["resource"], "filter": WINDOW}))

    async def one(call: Call) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with http.request(call.method, base + call.path, json=call.body, headers=headers) as resp:
            return resp.status, (await resp.text()) + resp.headers.get("etag", "")

    return list(await asyncio.gather(*(one(c) for c in reads)))
