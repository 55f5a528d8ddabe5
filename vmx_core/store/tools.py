"""What ``vmx import``, ``vmx export`` and ``vmx rotate-key`` do to the config store."""

from __future__ import annotations

from typing import Any

from vmx_core.config.convert import structure, unstructure
from vmx_core.config.models import VmxConfig
from vmx_core.config.validate import validate
from vmx_core.plugins import Plugins
from vmx_core.security.ciphers import is_encrypted
from vmx_core.security.credentials import Credentials, encrypted_credentials, replace_credentials
from vmx_core.security.rotate import rotate
from vmx_core.store.base import Check, ConfigStore
from vmx_core.store.objects import Stored, rows_of, tree_of
from vmx_core.store.service import STORED_SECTIONS, open_store


def _base(config: VmxConfig) -> dict[str, Any]:
    return {k: v for k, v in unstructure(config).items() if k not in STORED_SECTIONS}


def _checker(config: VmxConfig, plugins: Plugins) -> Check:
    base = _base(config)

    def check(rows: list[Stored]) -> None:
        composed = structure({**base, **tree_of(rows)}, VmxConfig)
        validate(composed, plugins.providers(), plugins.rule_functions())

    return check


async def _opened(config: VmxConfig) -> ConfigStore:
    store = open_store(config)
    await store.start()
    return store


async def import_file(config: VmxConfig, source: VmxConfig, plugins: Plugins) -> int:
    """Replace every stored object by ``source``'s, in one transaction; returns the version.
    Plaintext credentials in ``source`` are encrypted on the way in when ``config`` has an
    ``encryption`` section (the store should hold ciphertexts only)."""
    creds = Credentials(plugins.credential_ciphers())
    try:
        if config.encryption is not None:
            await creds.configure(config.encryption)
            source = await _seal_plaintext(source, creds)
        store = await _opened(config)
        try:
            return await store.replace_all(list(rows_of(source)), _checker(config, plugins), "vmx import")
        finally:
            await store.aclose()
    finally:
        await creds.aclose()


async def _seal_plaintext(config: VmxConfig, creds: Credentials) -> VmxConfig:
    sealed = {}
    for ws, wsc in config.workspaces.items():
        for env, envc in wsc.environments.items():
            for conn, connc in envc.connections.items():
                for name, secret in connc.credentials.items():
                    if secret and not is_encrypted(secret.reveal()):
                        sealed[(ws, env, conn, name)] = await creds.encrypt(secret.reveal(), ws, env, conn)
    return replace_credentials(config, sealed) if sealed else config


async def export_tree(config: VmxConfig, plugins: Plugins) -> dict[str, Any]:
    """The stored objects as the ``workspaces``/``roles``/``users`` of a config file
    (credentials stay ciphertexts, API keys stay hashes)."""
    store = await _opened(config)
    try:
        _, rows = await store.snapshot()
    finally:
        await store.aclose()
    return tree_of(rows)


async def rotate_store(config: VmxConfig, plugins: Plugins) -> int:
    """Re-seal every stored credential under the current key and write them all in one
    transaction; the old key is only read, so until the commit every process can still open
    what it holds, and after it every process reloads the new values together."""
    store = await _opened(config)
    creds = Credentials(plugins.credential_ciphers())
    try:
        _, rows = await store.snapshot()
        current = structure({**_base(config), **tree_of(rows)}, VmxConfig)
        if not any(True for _ in encrypted_credentials(current)):
            return 0
        rotated = {r.location: r.new for r in await rotate(current, creds)}
        new_rows = []
        for row in rows:
            body = row.body
            if row.key.kind == "ai-connection":
                k = row.key
                body = {**body, "credentials": {c: rotated.get((k.workspace, k.environment, k.name, c), v)
                                                for c, v in body.get("credentials", {}).items()}}
            new_rows.append((row.key, body))
        await store.replace_all(new_rows, _checker(config, plugins), "vmx rotate-key")
        return len(rotated)
    finally:
        await store.aclose()
        await creds.aclose()

