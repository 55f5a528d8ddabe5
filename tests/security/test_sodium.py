"""The libsodium cipher and credential decryption at config load (DESIGN §12)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import KEY, base_config
from vmx_core import Gateway
from vmx_core.config import config_from_dict
from vmx_core.config.models import EncryptionConfig
from vmx_core.errors import ConfigError, CredentialError
from vmx_core.plugins import Plugins
from vmx_core.secrets import Secret
from vmx_core.security.ciphers import parse
from vmx_core.security.credentials import Credentials
from vmx_core.security.rotate import rewrite_text, rotate
from vmx_core.security.sodium import SodiumKind, generate_key
from vmx_core.testing import FakeProvider

SECRET = "sk-live-THE-REAL-SECRET-1234"


def credentials() -> Credentials:
    return Credentials(Plugins.load(entry_points=False).credential_ciphers())


def config_with(value: str, key: str, previous: list[str] | None = None, provider: str = "fake") -> Any:
    raw = base_config(connections={"m": {"provider": provider, "credentials": {"api_key": value}}})
    raw["encryption"] = {"provider": "libsodium", "key": key, "previous_keys": previous or []}
    return config_from_dict(raw, environ={})


async def test_round_trip_and_binding_to_the_connection() -> None:
    """A value opens for its own workspace/environment/connection and for no other."""
    cipher = SodiumKind().open(EncryptionConfig(key=Secret(generate_key())))
    sealed = await cipher.encrypt(SECRET.encode(), b"acme/prod/m")
    assert SECRET.encode() not in sealed
    assert await cipher.decrypt(sealed, b"acme/prod/m") == SECRET.encode()
    with pytest.raises(CredentialError, match="does not authenticate") as info:
        await cipher.decrypt(sealed, b"acme/prod/other")
    assert SECRET not in str(info.value)


async def test_tampering_and_unknown_keys_are_refused() -> None:
    """A flipped byte fails authentication; a value sealed by an unconfigured key is named as such."""
    key = generate_key()
    cipher = SodiumKind().open(EncryptionConfig(key=Secret(key)))
    sealed = bytearray(await cipher.encrypt(b"x" * 20, b"a/b/c"))
    sealed[-1] ^= 1
    with pytest.raises(CredentialError, match="does not authenticate"):
        await cipher.decrypt(bytes(sealed), b"a/b/c")
    other = SodiumKind().open(EncryptionConfig(key=Secret(generate_key())))
    with pytest.raises(CredentialError, match="not configured"):
        await other.decrypt(await cipher.encrypt(b"x", b"a/b/c"), b"a/b/c")


def test_bad_keys_are_config_errors_with_their_path() -> None:
    """A missing, non-base64 or short key fails with the key's path."""
    with pytest.raises(ConfigError, match=r"\$\.encryption\.key"):
        SodiumKind().open(EncryptionConfig())
    with pytest.raises(ConfigError, match="base64"):
        SodiumKind().open(EncryptionConfig(key=Secret("not base64 !!")))
    with pytest.raises(ConfigError, match=r"previous_keys\[0\].*32 bytes"):
        SodiumKind().open(EncryptionConfig(key=Secret(generate_key()),
                                           previous_keys=[Secret(base64.b64encode(b"short").decode())]))


async def test_gateway_decrypts_credentials_for_the_provider_only() -> None:
    """The provider receives the plaintext; the gateway's config keeps the ciphertext."""
    key = generate_key()
    creds = credentials()
    await creds.configure(EncryptionConfig(key=Secret(key)))
    value = await creds.encrypt(SECRET, "acme", "prod", "m")
    async with Gateway.from_config(config_with(value, key), plugins=[FakeProvider()], entry_points=False) as gw:
        await gw.chat_completions("acme", "prod", {"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                                  api_key=KEY)
        stored = gw.config.workspaces["acme"].environments["prod"].connections["m"].credentials["api_key"]
        assert gw.runtime is not None
        live = gw.runtime.tenants[("acme", "prod")].connections["m"].config.credentials["api_key"]
    assert live.reveal() == SECRET
    assert stored.reveal() == value and SECRET not in repr(gw.config)


async def test_undecryptable_credentials_fail_start_naming_the_path_not_the_value() -> None:
    """A value sealed for another connection stops the start with its path; no plaintext or
    ciphertext appears in the message."""
    key = generate_key()
    creds = credentials()
    await creds.configure(EncryptionConfig(key=Secret(key)))
    value = await creds.encrypt(SECRET, "acme", "prod", "elsewhere")
    gw = Gateway.from_config(config_with(value, key), plugins=[FakeProvider()], entry_points=False)
    with pytest.raises(ConfigError) as info:
        await gw.start()
    assert info.value.errors == [("$.workspaces.acme.environments.prod.connections.m.credentials.api_key",
                                  "libsodium: the value does not authenticate for this connection")]
    assert value not in str(info.value) and SECRET not in str(info.value)


def test_malformed_ciphertexts_fail_validation() -> None:
    """`vmx check` finds a mangled value without needing the key."""
    with pytest.raises(ConfigError, match=r"credentials\.api_key: malformed ciphertext"):
        config_with("vmx:enc:v1:libsodium:***", generate_key(), provider="mock")


async def test_rotation_reseals_under_the_new_key_and_keeps_the_file_layout() -> None:
    """After rotation every value opens with the new key alone; the rewritten file keeps its comments."""
    old, new = generate_key(), generate_key()
    creds = credentials()
    await creds.configure(EncryptionConfig(key=Secret(old)))
    value = await creds.encrypt(SECRET, "acme", "prod", "m")
    rotated = await rotate(config_with(value, new, previous=[old], provider="mock"), credentials())
    assert [r.path for r in rotated] == ["$.workspaces.acme.environments.prod.connections.m.credentials.api_key"]
    text, missing = rewrite_text(f"# keep me\napi_key: \"{value}\"\n", rotated)
    assert missing == [] and text.startswith("# keep me") and value not in text
    only_new = credentials()
    await only_new.configure(EncryptionConfig(key=Secret(new)))
    assert await only_new.decrypt(rotated[0].new, "acme", "prod", "m") == SECRET
    assert parse(rotated[0].new).cipher == "libsodium"
