"""The aws-kms cipher against a real KMS endpoint (moto server mode on loopback)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import base_config
from tests.services.kms import REGION, aws_env, kms_client, kms_endpoint  # noqa: F401 (fixtures)
from vmx_core.config import config_from_dict
from vmx_core.config.models import EncryptionConfig
from vmx_core.errors import ConfigError, CredentialError
from vmx_core.plugins import Plugins
from vmx_core.security.credentials import Credentials
from vmx_core.security.kms import KmsCipher, KmsKind
from vmx_core.security.rotate import rotate

SECRET = "sk-kms-protected-SECRET-9876"


def new_key(endpoint: str) -> str:
    client: Any = kms_client(endpoint)
    return str(client.create_key(Description="vmx test")["KeyMetadata"]["KeyId"])


def open_cipher(endpoint: str, key_id: str | None, ttl: int = 300) -> KmsCipher:
    return KmsKind().open(EncryptionConfig(provider="aws-kms", key_id=key_id, region=REGION,
                                           endpoint_url=endpoint, data_key_ttl_s=ttl))


@pytest.fixture
def endpoint(kms_endpoint: str, aws_env: None) -> str:  # noqa: F811 (fixture)
    """The moto KMS endpoint with dummy credentials in the environment."""
    return kms_endpoint


async def test_encrypt_then_decrypt_round_trips(endpoint: str) -> None:
    """A value sealed with a KMS data key opens again, and the payload hides the plaintext."""
    cipher = open_cipher(endpoint, new_key(endpoint))
    sealed = await cipher.encrypt(SECRET.encode(), b"acme/prod/openai")
    assert SECRET.encode() not in sealed
    cipher.forget()  # force a real KMS Decrypt, not the cache
    assert await cipher.decrypt(sealed, b"acme/prod/openai") == SECRET.encode()
    await cipher.aclose()


async def test_a_wrong_encryption_context_is_refused_by_kms(endpoint: str) -> None:
    """A value moved to another connection fails: KMS will not unwrap its data key."""
    cipher = open_cipher(endpoint, new_key(endpoint))
    sealed = await cipher.encrypt(SECRET.encode(), b"acme/prod/openai")
    cipher.forget()
    with pytest.raises(CredentialError, match="aws-kms: decrypt failed: InvalidCiphertextException") as info:
        await cipher.decrypt(sealed, b"acme/prod/other")
    assert SECRET not in str(info.value)
    await cipher.aclose()


async def test_a_disabled_key_neither_encrypts_nor_unwraps(endpoint: str) -> None:
    """Once the master key is disabled, new values cannot be sealed and uncached ones cannot be opened."""
    key_id = new_key(endpoint)
    cipher = open_cipher(endpoint, key_id)
    sealed = await cipher.encrypt(SECRET.encode(), b"a/b/c")
    client: Any = kms_client(endpoint)
    client.disable_key(KeyId=key_id)
    cipher.forget()
    with pytest.raises(CredentialError, match="Disabled"):
        await cipher.decrypt(sealed, b"a/b/c")
    with pytest.raises(CredentialError, match="Disabled"):
        await cipher.encrypt(b"x", b"a/b/c")
    await cipher.aclose()


async def test_data_keys_are_cached_for_the_ttl_only(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated decrypts of one value unwrap its data key once; after the TTL, once more."""
    cipher = open_cipher(endpoint, new_key(endpoint), ttl=60)
    sealed = await cipher.encrypt(SECRET.encode(), b"a/b/c")
    cipher.forget()
    before = cipher.calls
    for _ in range(5):
        assert await cipher.decrypt(sealed, b"a/b/c") == SECRET.encode()
    per_unwrap = cipher.calls - before  # Decrypt + DescribeKey
    assert per_unwrap == 2
    import vmx_core.security.kms as kms_module

    later = kms_module.time.monotonic() + 61
    monkeypatch.setattr(kms_module.time, "monotonic", lambda: later)
    await cipher.decrypt(sealed, b"a/b/c")
    assert cipher.calls - before == 2 * per_unwrap
    await cipher.aclose()


async def test_rotation_moves_every_credential_to_the_new_master_key(endpoint: str) -> None:
    """rotate-key re-seals under key B; disabling key A afterwards leaves every value readable."""
    key_a, key_b = new_key(endpoint), new_key(endpoint)
    kinds = Plugins.load(entry_points=False).credential_ciphers()
    creds = Credentials(kinds)
    settings = {"provider": "aws-kms", "region": REGION, "endpoint_url": endpoint}
    await creds.configure(EncryptionConfig(key_id=key_a, **settings))
    value = await creds.encrypt(SECRET, "acme", "prod", "m")
    raw = base_config(connections={"m": {"provider": "mock", "credentials": {"api_key": value}}})
    raw["encryption"] = {**settings, "key_id": key_b}
    rotated = await rotate(config_from_dict(raw, environ={}), Credentials(kinds))
    await creds.aclose()
    client: Any = kms_client(endpoint)
    client.disable_key(KeyId=key_a)
    fresh = Credentials(kinds)
    raw["workspaces"]["acme"]["environments"]["prod"]["connections"]["m"]["credentials"]["api_key"] = rotated[0].new
    plain = await fresh.decrypt_config(config_from_dict(raw, environ={}))
    conn = plain.workspaces["acme"].environments["prod"].connections["m"]
    assert conn.credentials["api_key"].reveal() == SECRET
    raw["workspaces"]["acme"]["environments"]["prod"]["connections"]["m"]["credentials"]["api_key"] = value
    with pytest.raises(ConfigError, match="Disabled"):
        await Credentials(kinds).decrypt_config(config_from_dict(raw, environ={}))
    await fresh.aclose()
