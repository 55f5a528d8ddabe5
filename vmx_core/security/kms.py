"""The ``aws-kms`` cipher: envelope encryption under a KMS data key.

Each value is sealed with XChaCha20-Poly1305 under a fresh 256-bit data key from
``GenerateDataKey``; the payload carries that data key *encrypted by KMS*:
``version (1) || len(edk) (2, big-endian) || edk || nonce (24) || ciphertext+tag``.
The KMS encryption context is ``{"vmx:credential": "workspace/environment/connection"}``, so
KMS itself refuses to unwrap a data key for another connection (and CloudTrail names it).

Unwrapped data keys are cached **in memory only**, for ``data_key_ttl_s`` and at most
``_CACHE_SIZE`` entries, so a reload every second does not call KMS for every credential.
boto3 is synchronous: every KMS call runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from collections import OrderedDict
from typing import Any

from attrs import define, field, frozen
from nacl import bindings
from nacl.exceptions import CryptoError

from vmx_core.config.models import EncryptionConfig
from vmx_core.errors import ConfigError, CredentialError

_VERSION = 1
_NONCE = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_CACHE_SIZE = 1024
CONTEXT_KEY = "vmx:credential"


def _context(associated_data: bytes) -> dict[str, str]:
    return {CONTEXT_KEY: associated_data.decode()}


def _wrap(op: str, exc: Exception) -> CredentialError:
    # botocore messages can quote ARNs and request ids, never plaintext; keep only the code.
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return CredentialError(f"aws-kms: {op} failed: {code or type(exc).__name__}")


@define
class KmsCipher:
    name = "aws-kms"
    key_id: str | None
    region: str | None
    endpoint_url: str | None
    ttl_s: float
    #: KMS requests made so far (what the data-key cache saves shows here).
    calls: int = 0
    _client: Any = None
    #: (encrypted data key, context) -> (expires at, plaintext data key).  Never written out.
    _cache: OrderedDict[tuple[bytes, bytes], tuple[float, bytes]] = field(factory=OrderedDict)

    def _kms(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "kms", region_name=self.region, endpoint_url=self.endpoint_url,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10),
            )
        return self._client

    async def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        self.calls += 1
        try:
            result: dict[str, Any] = await asyncio.to_thread(getattr(self._kms(), op), **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise _wrap(op, exc) from None
        return result

    def _remember(self, edk: bytes, associated_data: bytes, key: bytes) -> None:
        self._cache[(edk, associated_data)] = (time.monotonic() + self.ttl_s, key)
        self._cache.move_to_end((edk, associated_data))
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def _cached(self, edk: bytes, associated_data: bytes) -> bytes | None:
        hit = self._cache.get((edk, associated_data))
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._cache[(edk, associated_data)]
            return None
        return hit[1]

    async def _require_enabled(self, key_id: str) -> None:
        # AWS refuses a disabled key in Decrypt itself; asking explicitly (only when a data
        # key is unwrapped, not per request) gives the same answer from any KMS-compatible
        # endpoint, and an operator a clear message.
        meta = (await self._call("describe_key", KeyId=key_id)).get("KeyMetadata", {})
        if meta.get("KeyState", "Enabled") != "Enabled":
            raise CredentialError(f"aws-kms: the master key is {meta.get('KeyState')}")

    async def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        if not self.key_id:
            raise CredentialError("aws-kms: encryption.key_id is needed to encrypt")
        await self._require_enabled(self.key_id)
        resp = await self._call("generate_data_key", KeyId=self.key_id, KeySpec="AES_256",
                                EncryptionContext=_context(associated_data))
        key, edk = bytes(resp["Plaintext"]), bytes(resp["CiphertextBlob"])
        nonce = secrets.token_bytes(_NONCE)
        sealed = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, associated_data, nonce, key)
        self._remember(edk, associated_data, key)
        return struct.pack(">BH", _VERSION, len(edk)) + edk + nonce + sealed

    async def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        try:
            version, n = struct.unpack(">BH", ciphertext[:3])
        except struct.error:
            raise CredentialError("aws-kms: malformed value") from None
        if version != _VERSION or len(ciphertext) < 3 + n + _NONCE:
            raise CredentialError("aws-kms: malformed value")
        edk, rest = ciphertext[3:3 + n], ciphertext[3 + n:]
        key = self._cached(edk, associated_data)
        if key is None:
            resp = await self._call("decrypt", CiphertextBlob=edk, EncryptionContext=_context(associated_data))
            await self._require_enabled(str(resp.get("KeyId", "")))
            key = bytes(resp["Plaintext"])
            self._remember(edk, associated_data, key)
        try:
            return bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(rest[_NONCE:], associated_data, rest[:_NONCE], key)
        except CryptoError:
            raise CredentialError("aws-kms: the value does not authenticate for this connection") from None

    def forget(self) -> None:
        """Drop every cached data key (tests; an operator's key revocation drill)."""
        self._cache.clear()

    async def aclose(self) -> None:
        self._cache.clear()
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


@frozen
class KmsKind:
    name = "aws-kms"

    def open(self, settings: EncryptionConfig) -> KmsCipher:
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise ConfigError("aws-kms needs boto3: pip install 'vmx[aws]'", "$.encryption.provider") from None
        return KmsCipher(settings.key_id, settings.region, settings.endpoint_url, float(settings.data_key_ttl_s))
