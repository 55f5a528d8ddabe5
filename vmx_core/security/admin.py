"""Who is calling the management API: ``VMX_ADMIN_TOKEN`` or an OIDC bearer JWT."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

from attrs import define

from vmx_core.config.models import VmxConfig
from vmx_core.errors import AuthenticationFailed
from vmx_core.security.oidc import OidcVerifier
from vmx_core.security.principal import ADMIN, Principal

ADMIN_TOKEN_ENV = "VMX_ADMIN_TOKEN"


def bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@define
class AdminAuth:
    """Resolves an ``Authorization`` header into a :class:`Principal` (or 401)."""

    environ: Mapping[str, str] = os.environ
    _verifier: OidcVerifier | None = None

    def configured(self, config: VmxConfig) -> bool:
        return bool(self.environ.get(ADMIN_TOKEN_ENV)) or config.management.oidc is not None

    async def principal(self, authorization: str | None, config: VmxConfig) -> Principal:
        token = bearer(authorization)
        if token is None:
            raise AuthenticationFailed("a bearer token is required: the admin token or an OIDC token")
        admin = self.environ.get(ADMIN_TOKEN_ENV)
        # Constant-time, so the comparison leaks nothing about the admin token.
        if admin and hmac.compare_digest(token.encode(), admin.encode()):
            return ADMIN
        oidc = config.management.oidc
        if oidc is None:
            raise AuthenticationFailed("invalid admin token")
        if self._verifier is None or self._verifier.settings != oidc:
            self._verifier = OidcVerifier(oidc)
        claims = await self._verifier.verify(token)
        return self._verifier.principal(claims, config.users)
