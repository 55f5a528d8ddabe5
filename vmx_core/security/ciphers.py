"""Credential ciphertexts: the ``vmx:enc:v1:<cipher>:<base64>`` format and the cipher protocol.

A cipher *kind* is what a plugin registers through ``vmx_register_credential_ciphers``: it has
a ``name`` and opens a :class:`Cipher` for the config's ``encryption`` section.  Kinds are
looked up by the ``<cipher>`` part of each value, so one config can hold values of several
kinds (during a migration from one to another, for instance).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from attrs import frozen

from vmx_core.errors import CredentialError

if TYPE_CHECKING:
    from vmx_core.config.models import EncryptionConfig

PREFIX = "vmx:enc:v1:"
_VALUE = re.compile(r"^vmx:enc:v1:([a-z0-9][a-z0-9._-]{0,63}):([A-Za-z0-9+/=_-]+)$")


@runtime_checkable
class Cipher(Protocol):
    """An opened cipher: keys loaded, clients created.  Methods never log or echo plaintext."""

    name: str

    async def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes: ...

    async def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        """Raise :class:`CredentialError` when the value cannot be authenticated."""

    async def aclose(self) -> None: ...


class CipherKind(Protocol):
    """What ``vmx_register_credential_ciphers`` returns: a named factory of ciphers."""

    name: str

    def open(self, settings: EncryptionConfig) -> Cipher:
        """A cipher for these settings; raise :class:`~vmx_core.errors.ConfigError` when a
        setting it needs is missing."""


@frozen
class Ciphertext:
    cipher: str
    payload: bytes

    def __str__(self) -> str:
        return f"{PREFIX}{self.cipher}:{base64.b64encode(self.payload).decode()}"


def is_encrypted(value: str) -> bool:
    return value.startswith(PREFIX)


def parse(value: str) -> Ciphertext:
    """Split a stored value; the message of a malformed one never repeats the value."""
    m = _VALUE.match(value)
    if m is None:
        raise CredentialError("malformed ciphertext: expected vmx:enc:v1:<cipher>:<base64>")
    try:
        payload = base64.b64decode(m.group(2).replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialError("malformed ciphertext: the payload is not base64") from None
    return Ciphertext(m.group(1), payload)


def associated_data(workspace: str, environment: str, connection: str) -> bytes:
    """What binds a ciphertext to its place: copied to another connection it will not open."""
    return f"{workspace}/{environment}/{connection}".encode()
