"""The objects of the config store: their keys, and how rows become a config tree and back.

Every object is one row ``(kind, workspace, environment, name) -> body``; the body is the
config file's object of that kind (``ai-resource`` -> a resource mapping), so the store, the
file and the management API all speak the same shapes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

from attrs import frozen

from vmx_core.config.convert import unstructure
from vmx_core.config.models import VmxConfig
from vmx_core.security.apikeys import hash_key

#: kind -> (the config-file collection it lives in, its scope)
KINDS: dict[str, tuple[str, str]] = {
    "workspace": ("workspaces", "global"),
    "environment": ("environments", "workspace"),
    "ai-connection": ("connections", "environment"),
    "ai-resource": ("resources", "environment"),
    "api-key": ("api_keys", "environment"),
    "pool-definition": ("pools", "environment"),
    "role": ("roles", "global"),
    "user": ("users", "global"),
}
#: Parents before children, so a tree can be assembled in one pass.
_ORDER = {k: i for i, k in enumerate(KINDS)}


@frozen(order=True)
class Key:
    kind: str
    workspace: str = ""
    environment: str = ""
    name: str = ""

    def under(self, parent: Key) -> bool:
        """Whether deleting ``parent`` deletes this object too."""
        if parent.kind == "workspace":
            return self == parent or (self.workspace == parent.name and self.kind not in ("role", "user"))
        if parent.kind == "environment":
            return (self.workspace, self.environment) == (parent.workspace, parent.name) or self == parent
        return self == parent


@frozen
class Stored:
    key: Key
    body: dict[str, Any]
    version: int


def tree_of(rows: Iterable[Stored]) -> dict[str, Any]:
    """The ``workspaces``/``roles``/``users`` part of a config file, from rows."""
    tree: dict[str, Any] = {"workspaces": {}, "roles": {}, "users": {}}
    for row in sorted(rows, key=lambda r: (_ORDER[r.key.kind], r.key)):
        k, body = row.key, copy.deepcopy(row.body)
        if k.kind == "workspace":
            tree["workspaces"][k.name] = {**body, "environments": {}}
        elif k.kind == "environment":
            ws = tree["workspaces"].setdefault(k.workspace, {"environments": {}})
            ws["environments"][k.name] = {**body, "connections": {}, "resources": {}, "api_keys": {}, "pools": []}
        elif k.kind in ("role", "user"):
            tree[KINDS[k.kind][0]][k.name] = body
        else:
            env = tree["workspaces"].setdefault(k.workspace, {"environments": {}})["environments"].setdefault(
                k.environment, {"connections": {}, "resources": {}, "api_keys": {}, "pools": []})
            if k.kind == "pool-definition":
                env["pools"] = body.get("pools", [])
            else:
                env[KINDS[k.kind][0]][k.name] = body
    return tree


def rows_of(config: VmxConfig) -> Iterator[tuple[Key, dict[str, Any]]]:
    """Every object of a loaded config, as ``(key, body)`` (what ``vmx import`` writes)."""
    raw = unstructure(config)
    for name, role in raw["roles"].items():
        yield Key("role", name=name), role
    for name, user in raw["users"].items():
        yield Key("user", name=name), user
    for ws_name, ws in raw["workspaces"].items():
        yield Key("workspace", name=ws_name), {k: v for k, v in ws.items() if k != "environments"}
        for env_name, env in ws["environments"].items():
            yield Key("environment", ws_name, name=env_name), {"description": env.get("description")}
            for kind in ("ai-connection", "ai-resource", "api-key"):
                for name, body in env[KINDS[kind][0]].items():
                    yield Key(kind, ws_name, env_name, name), hashed_key(body) if kind == "api-key" else body
            if env["pools"]:
                yield Key("pool-definition", ws_name, env_name), {"pools": env["pools"]}


def hashed_key(body: dict[str, Any]) -> dict[str, Any]:
    """An API key's body with a plaintext ``key`` (allowed in a config file) replaced by its
    ``key_sha256``: the store, ``vmx export`` and management answers only ever hold hashes."""
    out = {k: v for k, v in body.items() if k != "key"}
    if body.get("key"):
        out["key_sha256"] = hash_key(str(body["key"]))
    return out


def path_of(key: Key) -> str:
    """Where the object sits in a config file (``$.workspaces.acme.environments.prod...``)."""
    if key.kind in ("workspace", "role", "user"):
        return f"$.{KINDS[key.kind][0]}.{key.name}"
    if key.kind == "environment":
        return f"$.workspaces.{key.workspace}.environments.{key.name}"
    base = f"$.workspaces.{key.workspace}.environments.{key.environment}"
    if key.kind == "pool-definition":
        return f"{base}.pools"
    return f"{base}.{KINDS[key.kind][0]}.{key.name}"
