"""API keys (DESIGN §3) and the Secret wrapper (DESIGN §12)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.config.models import ApiKeyConfig
from vmx_core.secrets import Secret, mask
from vmx_core.security.apikeys import ApiKey, generate_key, hash_key

SETTINGS = settings(max_examples=200, deadline=None)
KEY_FORMAT = re.compile(r"^vmx_[A-Za-z0-9_-]{43}$")


def test_generated_keys_have_the_documented_format() -> None:
    """Every generated key is `vmx_` + 43 URL-safe characters encoding 32 bytes."""
    for _ in range(200):
        key = generate_key()
        assert KEY_FORMAT.match(key), key
        assert len(base64.urlsafe_b64decode(key[4:] + "=")) == 32


def test_generated_keys_are_unique() -> None:
    """A thousand generated keys are all different."""
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000


@SETTINGS
@given(st.text())
def test_hash_key_is_sha256_hex(key: str) -> None:
    """hash_key is the lowercase hex SHA-256 of the key's UTF-8 bytes."""
    digest = hash_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_key_from_config_keeps_only_the_hash() -> None:
    """A plaintext `key` in config becomes its SHA-256; the loaded ApiKey holds no plaintext."""
    key = generate_key()
    loaded = ApiKey.from_config("acme", "prod", "app", ApiKeyConfig(key=Secret(key), resources=["chat"]))
    assert loaded.sha256 == hash_key(key)
    assert key not in repr(loaded)
    hashed = ApiKey.from_config("acme", "prod", "app", ApiKeyConfig(key_sha256="ab" * 32))
    assert hashed.sha256 == "ab" * 32


def test_key_scope_and_expiry() -> None:
    """may_call honours the resource list and `*`; usable honours enabled and expires_at."""
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    key = ApiKey.from_config("a", "p", "k", ApiKeyConfig(key_sha256="0" * 64, resources=["chat"], expires_at=now))
    assert key.may_call("chat") and not key.may_call("gpt")
    assert key.usable(now - dt.timedelta(seconds=1)) and not key.usable(now)
    star = ApiKey.from_config("a", "p", "k", ApiKeyConfig(key_sha256="0" * 64, resources=["*"], enabled=False))
    assert star.may_call("anything") and not star.usable(now)


# Printable text (repr escapes the rest) without quotes or dots, so a value can't coincide with
# repr's own punctuation.
secret_text = st.text(st.characters(whitelist_categories=("L", "N", "S", "Pd", "Pc")), min_size=9, max_size=80)


@SETTINGS
@given(secret_text)
def test_secret_never_shows_its_value(value: str) -> None:
    """repr, str, f-strings and %-formatting of a Secret show only the masked form."""
    secret = Secret(value)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret}", repr([secret]), repr({"k": secret})]
    for text in shown:
        assert value not in text
        assert mask(value) in text
    assert secret.reveal() == value


@SETTINGS
@given(st.text(min_size=9, max_size=80))
def test_mask_keeps_prefix_and_last_four(value: str) -> None:
    """mask shows `vmx_`/3-character prefix, `...`, and the last 4 characters; nothing else."""
    head = value[:4] if value.startswith("vmx_") else value[:3]
    assert mask(value) == f"{head}...{value[-4:]}"
    assert len(mask(value)) == len(head) + 7


@SETTINGS
@given(st.text(max_size=8))
def test_short_values_are_fully_masked(value: str) -> None:
    """A value of 8 characters or fewer is masked completely."""
    assert mask(value) == "****"
    assert repr(Secret(value)) == str(Secret(value)) == "Secret('****')"


def test_generated_key_masks_to_prefix_and_tail() -> None:
    """A real key masks to `vmx_...` plus its last four characters."""
    key = generate_key()
    assert Secret(key).masked() == f"vmx_...{key[-4:]}"
    assert key[4:-4] not in str(Secret(key))


def test_secret_equality_and_truthiness() -> None:
    """Secrets compare by value (config equality) and an empty secret is falsy."""
    assert Secret("abc") == Secret("abc") and Secret("abc") != Secret("abd")
    assert not Secret("") and Secret("x")
