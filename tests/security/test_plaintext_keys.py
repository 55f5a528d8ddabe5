"""An API key written in plaintext in a config file is only ever stored and answered as its hash."""

from __future__ import annotations

from tests.conftest import base_config
from tests.services.postgres import postgres_server, postgres_uri  # noqa: F401 (fixtures)
from vmx_core import Gateway
from vmx_core.config import config_from_dict
from vmx_core.plugins import Plugins
from vmx_core.security.apikeys import hash_key
from vmx_core.security.principal import ADMIN
from vmx_core.store.manage import Management
from vmx_core.store.service import ConfigService
from vmx_core.store.tools import export_tree, import_file

PLAIN = "vmx_plaintext_in_the_file_0123456789abcdefghijklmn"


def with_plain_key(**storage: str) -> dict[str, object]:
    raw = base_config(api_keys={"plain": {"key": PLAIN, "resources": ["chat"]}})
    raw["storage"] = {"audit": "none", **storage}
    return raw


async def test_management_answers_show_the_hash_of_a_file_key() -> None:
    """With the file store, GET and list of a key written as `key:` show `key_sha256`, never the key."""
    gw = Gateway.from_config(config_from_dict(with_plain_key(), environ={}))
    async with gw:
        service = ConfigService.for_gateway(gw)
        await service.start()
        try:
            m = Management(service)
            got = (await m.get(ADMIN, "api-key", "acme", "prod", "plain")).body
            listed = await m.list(ADMIN, "api-key", "acme", "prod")
        finally:
            await service.aclose()
    assert got["key_sha256"] == hash_key(PLAIN) and "key" not in got
    assert PLAIN not in str(listed) and PLAIN not in str(got)


async def test_import_stores_and_exports_only_the_hash(postgres_uri: str) -> None:  # noqa: F811
    """`vmx import` of a file key keeps its hash in Postgres; `vmx export` gives the hash back."""
    plugins = Plugins.load()
    config = config_from_dict(with_plain_key(audit=postgres_uri, config="database"), environ={})
    await import_file(config, config, plugins)
    exported = await export_tree(config, plugins)
    key = exported["workspaces"]["acme"]["environments"]["prod"]["api_keys"]["plain"]
    assert key["key_sha256"] == hash_key(PLAIN) and "key" not in key
    assert PLAIN not in str(exported)
