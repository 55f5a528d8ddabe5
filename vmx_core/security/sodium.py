"""The ``libsodium`` cipher: XChaCha20-Poly1305 (IETF AEAD) under a 32-byte key.

Payload: ``key id (4) || nonce (24) || ciphertext+tag``.  The key id is an unkeyed BLAKE2b
fingerprint of the key, so a value names the key that sealed it and ``previous_keys`` can be
kept readable while ``vmx rotate-key`` moves everything to the new key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

from attrs import frozen
from nacl import bindings
from nacl.exceptions import CryptoError

from vmx_core.config.models import EncryptionConfig
from vmx_core.errors import ConfigError, CredentialError
from vmx_core.secrets import Secret

KEY_BYTES = bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
NONCE_BYTES = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_KID_BYTES = 4


def generate_key() -> str:
    """A new key, base64: what ``vmx encrypt --generate-key`` prints."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_id(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=_KID_BYTES, person=b"vmx-sodium-kid").digest()


def _decode_key(secret: Secret, path: str) -> bytes:
    try:
        raw = base64.b64decode(secret.reveal().strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("must be base64 (vmx encrypt --generate-key makes one)", path) from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"must decode to {KEY_BYTES} bytes, not {len(raw)}", path)
    return raw


@frozen
class SodiumCipher:
    name = "libsodium"
    current: bytes
    #: key id -> key, the current one included: every key that may still open a value.
    readable: dict[bytes, bytes]

    async def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, associated_data, nonce, self.current)
        return key_id(self.current) + nonce + sealed

    async def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        kid, nonce, sealed = ciphertext[:_KID_BYTES], ciphertext[_KID_BYTES:_KID_BYTES + NONCE_BYTES], ciphertext[_KID_BYTES + NONCE_BYTES:]
        key = self.readable.get(kid)
        if key is None:
            raise CredentialError("libsodium: the value was sealed with a key that is not configured")
        try:
            return bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, associated_data, nonce, key)
        except CryptoError:
            # Wrong associated data (a value copied to another connection) or a tampered value.
            raise CredentialError("libsodium: the value does not authenticate for this connection") from None

    async def aclose(self) -> None:
        return None


@frozen
class SodiumKind:
    name = "libsodium"

    def open(self, settings: EncryptionConfig) -> SodiumCipher:
        if settings.key is None:
            raise ConfigError("libsodium needs encryption.key (a base64 32-byte key)", "$.encryption.key")
        current = _decode_key(settings.key, "$.encryption.key")
        readable = {key_id(current): current}
        for i, old in enumerate(settings.previous_keys):
            raw = _decode_key(old, f"$.encryption.previous_keys[{i}]")
            readable.setdefault(key_id(raw), raw)
        return SodiumCipher(current, readable)
