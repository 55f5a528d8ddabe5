"""API keys (DESIGN §3): ``vmx_`` + 43 URL-safe characters, stored only as SHA-256 hex."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets

from attrs import frozen

from vmx_core.config.models import ApiKeyConfig

PREFIX = "vmx_"


def generate_key() -> str:
    """A new key: 32 random bytes, URL-safe base64 without padding (43 characters)."""
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@frozen
class ApiKey:
    """A loaded key: its name and scope, never its plaintext."""

    name: str
    workspace: str
    environment: str
    sha256: str
    resources: frozenset[str]
    allow_overrides: frozenset[str]
    enabled: bool
    expires_at: dt.datetime | None

    @classmethod
    def from_config(cls, workspace: str, environment: str, name: str, cfg: ApiKeyConfig) -> ApiKey:
        digest = cfg.key_sha256 if cfg.key_sha256 is not None else hash_key(cfg.key.reveal() if cfg.key else "")
        return cls(
            name=name,
            workspace=workspace,
            environment=environment,
            sha256=digest,
            resources=frozenset(cfg.resources),
            allow_overrides=frozenset(cfg.allow_overrides),
            enabled=cfg.enabled,
            expires_at=cfg.expires_at,
        )

    def usable(self, now: dt.datetime) -> bool:
        return self.enabled and (self.expires_at is None or now < self.expires_at)

    def may_call(self, resource: str) -> bool:
        return "*" in self.resources or resource in self.resources
