"""The management API as plain async functions (DESIGN §2): the shell maps HTTP onto these.

Every operation authorizes first (so a caller outside a workspace learns nothing about it),
then checks that the parents exist, then writes through the store with the whole resulting
config validated.  Bodies are the config file's object of the kind plus ``name``; answers
mask every credential (``sk-...abcd``) and show an API key's plaintext only once, on create.
"""

from __future__ import annotations

import asyncio
from typing import Any

from attrs import define

from vmx_core.config.convert import structure, unstructure
from vmx_core.config.models import (
    ApiKeyConfig,
    ConnectionConfig,
    PoolConfig,
    ResourceConfig,
    RoleConfig,
    UserConfig,
)
from vmx_core.config.validate import valid_name, valid_user_id
from vmx_core.errors import ConfigError, CredentialError, InvalidRequest, NotFound, PermissionDenied
from vmx_core.secrets import mask
from vmx_core.security.apikeys import generate_key, hash_key
from vmx_core.security.ciphers import is_encrypted
from vmx_core.security.policies import resource_name
from vmx_core.security.principal import Principal, authorize
from vmx_core.store.base import Check, Expect
from vmx_core.store.objects import KINDS, Key, Stored, hashed_key, path_of
from vmx_core.store.service import ConfigService

_CLASSES: dict[str, type] = {
    "ai-connection": ConnectionConfig, "ai-resource": ResourceConfig, "api-key": ApiKeyConfig,
    "role": RoleConfig, "user": UserConfig,
}
#: How long a write waits for its own change to be live in this process before answering.
APPLY_TIMEOUT_S = 10.0


@define
class Answer:
    body: dict[str, Any]
    version: int


def object_key(kind: str, workspace: str | None, environment: str | None, name: str | None) -> Key:
    """The store key of the object a route names (``name`` None: the collection itself)."""
    scope = KINDS[kind][1]
    if scope == "global":
        return Key(kind, name=name or "")
    if scope == "workspace":
        return Key(kind, workspace or "", name=name or "")
    return Key(kind, workspace or "", environment or "", name or "")


def _resource(key: Key) -> str:
    scope = KINDS[key.kind][1]
    if key.kind == "workspace":
        return resource_name(key.name or None)
    if scope == "global":
        return f"{key.kind}:{key.name}" if key.name else key.kind
    if key.kind == "environment":
        return resource_name(key.workspace, key.name or None)
    if key.kind == "pool-definition":
        return resource_name(key.workspace, key.environment, "pool-definition")
    return resource_name(key.workspace, key.environment, key.kind, key.name or None)


def policy_target(key: Key) -> tuple[str, str | None]:
    """What role policies see of an object: its resource string (``workspace:W:environment:E:
    ai-resource:NAME``, ``role:NAME``...) and the workspace it lives in (None: roles and users)."""
    workspace = key.workspace or (key.name if key.kind == "workspace" else "")
    return _resource(key), workspace or None


def _require_possible(key: Key) -> None:
    """404 for a name that no stored object can have (checked after authorization, so the
    answer is the same as for any missing object; and such names never reach the store)."""
    ok = all(valid_name(n) for n in (key.workspace, key.environment) if n)
    if key.name:
        ok = ok and (valid_user_id(key.name) if key.kind == "user" else valid_name(key.name))
    if not ok:
        raise NotFound(f"{key.kind} {key.name or key.environment} not found")


def _nul_path(value: Any, path: str) -> str | None:
    """The path of the first string (or key) in a JSON value that holds a NUL character."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}"
            if "\x00" in k:
                return where.replace("\x00", "\\u0000")
            found = _nul_path(v, where)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _nul_path(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _bad(errors: list[tuple[str, str]]) -> InvalidRequest:
    message = "; ".join(f"{p}: {m}" for p, m in errors)
    return InvalidRequest(f"invalid body: {message}", param=errors[0][0] if errors else None)


@define
class Management:
    service: ConfigService

    # -- helpers -------------------------------------------------------------------------------

    def _authorize(self, who: Principal, op: str, key: Key) -> None:
        roles = {name: list(role.statements) for name, role in self.service.gateway.config.roles.items()}
        resource, workspace = policy_target(key)
        authorize(who, roles, f"{key.kind}:{op}", resource, workspace)

    async def _require_parents(self, key: Key) -> None:
        scope = KINDS[key.kind][1]
        if scope in ("workspace", "environment") and await self.service.store.get(Key("workspace", name=key.workspace)) is None:
            raise NotFound(f"workspace {key.workspace} not found")
        if scope == "environment" and await self.service.store.get(
                Key("environment", key.workspace, name=key.environment)) is None:
            raise NotFound(f"environment {key.workspace}/{key.environment} not found")

    def _check(self, key: Key, who: Principal) -> Check:
        prefix = path_of(key)

        def check(rows: list[Stored]) -> None:
            try:
                self.service.compose(rows)
            except ConfigError as exc:
                shown: list[tuple[str, str]] = []
                hidden = False
                for p, m in exc.errors:
                    if _under(p, prefix):  # inside the written object: relative to its body
                        shown.append(("$" + p[len(prefix):], m))
                    elif self._may_read(who, p, rows):
                        shown.append((p, m))
                    else:
                        hidden = True
                if hidden and not shown:
                    shown.append(("$", "the change would make objects you cannot read invalid"))
                raise _bad(shown) from None

        return check

    def _may_read(self, who: Principal, path: str, rows: list[Stored]) -> bool:
        """Whether an error at ``path`` (outside the written object) may be shown to ``who``:
        only when ``who`` may get the object holding it, so a validation error never names
        another workspace's objects (or a user) to a caller who cannot read them."""
        owners = [r.key for r in rows if _under(path, path_of(r.key))]
        if not owners:
            return who.workspaces is None
        owner = max(owners, key=lambda k: len(path_of(k)))
        try:
            self._authorize(who, "get", owner)
        except PermissionDenied:
            return False
        return True

    async def _wait(self, version: int) -> None:
        async with asyncio.timeout(APPLY_TIMEOUT_S):
            await self.service.wait_applied(version)

    async def _present(self, row: Stored) -> dict[str, Any]:
        body = hashed_key(row.body) if row.key.kind == "api-key" else dict(row.body)
        if row.key.kind == "ai-connection":
            body["credentials"] = {k: await self._masked(row.key, v) for k, v in body.get("credentials", {}).items()}
        if row.key.kind in ("pool-definition",):
            return body
        return {"name": row.key.name, **body}

    async def _masked(self, key: Key, value: str) -> str:
        if not is_encrypted(value):
            return mask(value)
        try:
            plain = await self.service.gateway.credentials.decrypt(value, key.workspace, key.environment, key.name)
        except (CredentialError, ConfigError):
            return "****"
        return mask(plain)

    # -- body handling -------------------------------------------------------------------------

    async def _body(self, key: Key, raw: Any, current: Stored | None) -> tuple[dict[str, Any], str | None]:
        """The normalised object to store, and an API key's plaintext (create only)."""
        if not isinstance(raw, dict):
            raise InvalidRequest("the body must be a JSON object", param="$")
        nul = _nul_path(raw, "$")
        if nul is not None:  # PostgreSQL cannot store it, and no name or value needs it
            raise _bad([(nul, "must not contain NUL characters")])
        data = {k: v for k, v in raw.items() if k != "name"}
        if key.kind == "pool-definition":
            pools = data.get("pools")
            if set(data) - {"pools"} or not isinstance(pools, list):
                raise _bad([("$.pools", "expected {\"pools\": [...]}")])
            return {"pools": [unstructure(self._structure(p, PoolConfig, f"$.pools[{i}]")) for i, p in enumerate(pools)]}, None
        if key.kind in ("workspace", "environment"):
            extra = sorted(set(data) - {"description"})
            if extra:
                raise _bad([(f"$.{k}", "unknown key (children have their own routes)") for k in extra])
            if data.get("description") is not None and not isinstance(data["description"], str):
                raise _bad([("$.description", "expected a string")])
            return {"description": data.get("description")}, None
        plaintext: str | None = None
        if key.kind == "api-key":
            if "key" in data:
                raise _bad([("$.key", "plaintext keys are never accepted: omit it and one is generated")])
            if current is not None and "key_sha256" not in data:
                data["key_sha256"] = current.body.get("key_sha256")
            if data.get("key_sha256") is None:
                plaintext = generate_key()
                data["key_sha256"] = hash_key(plaintext)
        if key.kind == "ai-connection":
            data["credentials"] = await self._seal(key, data.get("credentials", {}), current)
        value = unstructure(self._structure(data, _CLASSES[key.kind], "$"))
        if key.kind == "api-key":
            value.pop("key", None)  # only the hash is ever stored
        return value, plaintext

    @staticmethod
    def _structure(data: Any, cls: type, path: str) -> Any:
        try:
            return structure(data, cls, path=path, strict=True)
        except ConfigError as exc:
            raise _bad(exc.errors) from None

    async def _seal(self, key: Key, creds: Any, current: Stored | None) -> dict[str, str]:
        """Credentials as stored: ciphertexts only.  A masked value sent back unchanged keeps
        the stored one; a plaintext is encrypted for this connection; a ciphertext must open."""
        if not isinstance(creds, dict):
            raise _bad([("$.credentials", "expected a mapping")])
        old = (current.body.get("credentials", {}) if current else {})
        gw = self.service.gateway
        out: dict[str, str] = {}
        for name, value in creds.items():
            where = f"$.credentials.{name}"
            if not isinstance(value, str):
                raise _bad([(where, "expected a string")])
            if name in old and value == await self._masked(key, old[name]):
                out[name] = old[name]
            elif is_encrypted(value):
                try:
                    await gw.credentials.decrypt(value, key.workspace, key.environment, key.name)
                except (CredentialError, ConfigError) as exc:
                    raise _bad([(where, str(exc.errors[0][1]) if isinstance(exc, ConfigError) else str(exc))]) from None
                out[name] = value
            else:
                if gw.config.encryption is None:
                    raise _bad([(where, "the gateway has no encryption section: credentials cannot be stored")])
                try:
                    out[name] = await gw.credentials.encrypt(value, key.workspace, key.environment, key.name)
                except (CredentialError, ConfigError) as exc:
                    raise _bad([(where, f"cannot encrypt: {exc}")]) from None
        return out

    # -- operations ----------------------------------------------------------------------------

    async def list(self, who: Principal, kind: str, workspace: str | None = None,
                   environment: str | None = None) -> list[dict[str, Any]]:
        parent = object_key(kind, workspace, environment, None)
        if kind == "workspace":
            _, rows = await self.service.store.snapshot()
            visible = []
            for row in rows:
                if row.key.kind == "workspace" and who.may_see_workspace(row.key.name):
                    try:
                        self._authorize(who, "list", row.key)
                    except PermissionDenied:  # not listed, rather than refused: it is a filter
                        continue
                    visible.append(await self._present(row))
            return sorted(visible, key=lambda b: str(b["name"]))
        self._authorize(who, "list", parent)
        _require_possible(parent)
        await self._require_parents(parent)
        _, rows = await self.service.store.snapshot()
        mine = [r for r in rows if r.key.kind == kind and (r.key.workspace, r.key.environment)
                == (parent.workspace, parent.environment)]
        return [await self._present(r) for r in sorted(mine, key=lambda r: r.key)]

    async def get(self, who: Principal, kind: str, workspace: str | None, environment: str | None,
                  name: str | None) -> Answer:
        key = object_key(kind, workspace, environment, name)
        self._authorize(who, "get", key)
        _require_possible(key)
        row = await self.service.store.get(key)
        if row is None:
            if kind == "pool-definition":
                await self._require_parents(key)
                return Answer({"pools": []}, 0)
            raise NotFound(f"{kind} {name or environment} not found")
        return Answer(await self._present(row), row.version)

    async def create(self, who: Principal, kind: str, workspace: str | None, environment: str | None,
                     body: Any) -> Answer:
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", param="$")
        name = body.get("name")
        if not isinstance(name, str) or not (valid_user_id(name) if kind == "user" else valid_name(name)):
            what = "a user id (1..320 characters, no '/', '\\', CR, LF or NUL)" if kind == "user" else (
                "a name (letters, digits, '.', '_', '-'; at most 128, starting with a letter or digit)")
            raise InvalidRequest(f"invalid body: $.name: {what} is required", param="$.name")
        key = object_key(kind, workspace, environment, name)
        self._authorize(who, "create", key)
        _require_possible(key)
        await self._require_parents(key)
        stored, plaintext = await self._body(key, body, None)
        row = await self.service.store.write(key, stored, Expect(exists=False), self._check(key, who), who.id)
        assert row is not None
        await self._wait(row.version)
        answer = await self._present(row)
        if plaintext is not None:
            answer["key"] = plaintext  # shown once; only its SHA-256 is kept
        return Answer(answer, row.version)

    async def update(self, who: Principal, kind: str, workspace: str | None, environment: str | None,
                     name: str | None, body: Any, if_match: int | None) -> Answer:
        key = object_key(kind, workspace, environment, name)
        self._authorize(who, "update", key)
        _require_possible(key)
        await self._require_parents(key)
        if isinstance(body, dict) and "name" in body and body["name"] != key.name and kind != "pool-definition":
            raise InvalidRequest("invalid body: $.name: does not match the URL (objects cannot be renamed)",
                                 param="$.name")
        current = await self.service.store.get(key)
        if current is None and kind != "pool-definition":
            raise NotFound(f"{kind} {name} not found")
        stored, _ = await self._body(key, body, current)
        expect = Expect(exists=None if kind == "pool-definition" else True, version=if_match)
        row = await self.service.store.write(key, stored, expect, self._check(key, who), who.id)
        assert row is not None
        await self._wait(row.version)
        return Answer(await self._present(row), row.version)

    async def delete(self, who: Principal, kind: str, workspace: str | None, environment: str | None,
                     name: str | None, if_match: int | None) -> None:
        key = object_key(kind, workspace, environment, name)
        self._authorize(who, "delete", key)
        _require_possible(key)
        await self.service.store.write(key, None, Expect(exists=True, version=if_match), self._check(key, who), who.id)
        version, _ = await self.service.store.snapshot()
        await self._wait(version)
