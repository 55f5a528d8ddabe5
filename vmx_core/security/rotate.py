"""``vmx rotate-key``: re-seal every credential under the current key.

Every value is opened with whatever key can read it (``previous_keys``, or for ``aws-kms`` any
master key the caller may use) and sealed again with the current one.  Nothing is written
until every value has been re-sealed, so a failure half-way leaves the old values in place,
all still readable.
"""

from __future__ import annotations

from attrs import frozen

from vmx_core.config.models import VmxConfig
from vmx_core.errors import ConfigError, CredentialError
from vmx_core.security.credentials import Credentials, Location, encrypted_credentials, path_of


@frozen
class Rotated:
    location: Location
    old: str
    new: str

    @property
    def path(self) -> str:
        return path_of(self.location)


async def rotate(config: VmxConfig, credentials: Credentials) -> list[Rotated]:
    """The new ciphertext of every encrypted credential of ``config``, under
    ``config.encryption``'s current key (raises :class:`ConfigError` listing every value that
    could not be opened; nothing is half-done because nothing is written here)."""
    await credentials.configure(config.encryption)
    out: list[Rotated] = []
    errors: list[tuple[str, str]] = []
    for loc, value in encrypted_credentials(config):
        try:
            plain = await credentials.decrypt(value, *loc[:3])
            out.append(Rotated(loc, value, await credentials.encrypt(plain, *loc[:3])))
        except CredentialError as exc:
            errors.append((path_of(loc), str(exc)))
    if errors:
        raise ConfigError(errors)
    return out


def rewrite_text(text: str, rotated: list[Rotated]) -> tuple[str, list[Rotated]]:
    """Replace each old ciphertext in a config file's text by its new one, keeping comments
    and layout.  Returns the new text and the values not found literally (they came from
    ``${VAR}`` references, which the operator must update where the variable is set)."""
    missing = []
    for r in rotated:
        if r.old in text:
            text = text.replace(r.old, r.new)
        else:
            missing.append(r)
    return text, missing
