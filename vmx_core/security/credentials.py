"""Turning the credentials of a config into plaintext for the runtime, and back.

The :class:`Credentials` service opens each cipher kind once per ``encryption`` section and
keeps it across reloads (so the KMS data-key cache survives a reload).  Decryption returns a
*new* config for :class:`~vmx_core.runtime.Runtime` only: the gateway's own ``config`` (what
the management API and ``vmx export`` see) keeps the ciphertexts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs
from attrs import define, field

from vmx_core.config.models import ConnectionConfig, EncryptionConfig, VmxConfig
from vmx_core.errors import ConfigError, CredentialError
from vmx_core.plugins import hookimpl
from vmx_core.secrets import Secret
from vmx_core.security.ciphers import (
    Cipher,
    CipherKind,
    Ciphertext,
    associated_data,
    is_encrypted,
    parse,
)
from vmx_core.security.kms import KmsKind
from vmx_core.security.sodium import SodiumKind


@hookimpl(trylast=True)
def vmx_register_credential_ciphers() -> list[CipherKind]:
    """The built-in ciphers, registered exactly like a plugin's."""
    return [SodiumKind(), KmsKind()]


Location = tuple[str, str, str, str]  # workspace, environment, connection, credential


def encrypted_credentials(config: VmxConfig) -> Iterator[tuple[Location, str]]:
    for ws_name, ws in config.workspaces.items():
        for env_name, env in ws.environments.items():
            for conn_name, conn in env.connections.items():
                for cred, secret in conn.credentials.items():
                    if is_encrypted(secret.reveal()):
                        yield (ws_name, env_name, conn_name, cred), secret.reveal()


def path_of(loc: Location) -> str:
    ws, env, conn, cred = loc
    return f"$.workspaces.{ws}.environments.{env}.connections.{conn}.credentials.{cred}"


@define
class Credentials:
    kinds: Mapping[str, CipherKind]
    _settings: EncryptionConfig | None = None
    _opened: dict[str, Cipher] = field(factory=dict)

    async def configure(self, settings: EncryptionConfig | None) -> None:
        """Use ``settings`` from now on; ciphers opened for other settings are closed."""
        if settings == self._settings:
            return
        opened, self._opened, self._settings = self._opened, {}, settings
        for cipher in opened.values():
            await cipher.aclose()

    def cipher(self, name: str | None = None) -> Cipher:
        """The opened cipher ``name`` (default: ``encryption.provider``)."""
        settings = self._settings or EncryptionConfig()
        name = name or settings.provider
        if name not in self._opened:
            kind = self.kinds.get(name)
            if kind is None:
                known = ", ".join(sorted(self.kinds)) or "none"
                raise ConfigError(f"no credential cipher {name!r} is installed (installed: {known})", "$.encryption.provider")
            self._opened[name] = kind.open(settings)
        return self._opened[name]

    async def encrypt(self, plaintext: str, workspace: str, environment: str, connection: str) -> str:
        cipher = self.cipher()
        payload = await cipher.encrypt(plaintext.encode(), associated_data(workspace, environment, connection))
        return str(Ciphertext(cipher.name, payload))

    async def decrypt(self, value: str, workspace: str, environment: str, connection: str) -> str:
        ct = parse(value)
        plain = await self.cipher(ct.cipher).decrypt(ct.payload, associated_data(workspace, environment, connection))
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise CredentialError("the decrypted value is not UTF-8 text") from None

    async def decrypt_config(self, config: VmxConfig) -> VmxConfig:
        """``config`` with every ``vmx:enc:v1:`` credential replaced by its plaintext; every
        failure is reported at once, by path, in one :class:`ConfigError` (never the value)."""
        await self.configure(config.encryption)
        plain: dict[Location, str] = {}
        errors: list[tuple[str, str]] = []
        for loc, value in encrypted_credentials(config):
            try:
                plain[loc] = await self.decrypt(value, *loc[:3])
            except (CredentialError, ConfigError) as exc:
                errors.append((path_of(loc), str(exc.errors[0][1]) if isinstance(exc, ConfigError) else str(exc)))
        if errors:
            raise ConfigError(errors)
        return replace_credentials(config, plain) if plain else config

    async def aclose(self) -> None:
        await self.configure(None)


def replace_credentials(config: VmxConfig, values: Mapping[Location, str]) -> VmxConfig:
    """A copy of ``config`` with the credentials at ``values``' locations replaced."""
    workspaces = dict(config.workspaces)
    for (ws, env, conn, cred), value in values.items():
        wsc = workspaces[ws]
        envc = wsc.environments[env]
        connc: ConnectionConfig = envc.connections[conn]
        connc = attrs.evolve(connc, credentials={**connc.credentials, cred: Secret(value)})
        envc = attrs.evolve(envc, connections={**envc.connections, conn: connc})
        workspaces[ws] = attrs.evolve(wsc, environments={**wsc.environments, env: envc})
    return attrs.evolve(config, workspaces=workspaces)
