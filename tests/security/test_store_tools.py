"""`vmx import` seals plaintext credentials; `vmx rotate-key` re-seals the Postgres store in one go."""

from __future__ import annotations

from typing import Any

from tests.conftest import base_config
from tests.services.postgres import postgres_server, postgres_uri  # noqa: F401 (fixtures)
from vmx_core.config import config_from_dict
from vmx_core.config.models import EncryptionConfig
from vmx_core.plugins import Plugins
from vmx_core.secrets import Secret
from vmx_core.security.credentials import Credentials
from vmx_core.security.sodium import generate_key
from vmx_core.store.postgres import PostgresConfigStore
from vmx_core.store.tools import export_tree, import_file, rotate_store

PLAIN = "sk-imported-SECRET-0000111122223333"


def gateway_config(uri: str, key: str, previous: list[str] | None = None) -> Any:
    raw: dict[str, Any] = {"storage": {"audit": uri, "config": "database"},
                           "encryption": {"key": key, "previous_keys": previous or []}}
    return config_from_dict(raw, environ={})


async def test_import_seals_and_rotation_reseals_every_stored_credential(postgres_uri: str) -> None:  # noqa: F811
    """Imported plaintext is stored encrypted; after rotation only the new key opens it."""
    plugins = Plugins.load()
    old, new = generate_key(), generate_key()
    source = config_from_dict(base_config(connections={"m": {"provider": "mock", "credentials": {"api_key": PLAIN}}}),
                              environ={})
    assert await import_file(gateway_config(postgres_uri, old), source, plugins) == 1
    stored = (await export_tree(gateway_config(postgres_uri, old), plugins))["workspaces"]["acme"]["environments"]
    before = stored["prod"]["connections"]["m"]["credentials"]["api_key"]
    assert before.startswith("vmx:enc:v1:libsodium:") and PLAIN not in str(stored)
    assert await rotate_store(gateway_config(postgres_uri, new, [old]), plugins) == 1
    version, rows = await PostgresConfigStore(postgres_uri).snapshot()
    after = next(r for r in rows if r.key.kind == "ai-connection").body["credentials"]["api_key"]
    assert version == 2 and after != before
    only_new = Credentials(plugins.credential_ciphers())
    await only_new.configure(EncryptionConfig(key=Secret(new)))
    assert await only_new.decrypt(after, "acme", "prod", "m") == PLAIN
