"""OIDC bearer tokens for the management API: signature (JWKS), issuer, audience, expiry.

The JWKS is fetched from ``jwks_uri`` (or the issuer's discovery document) and cached for
``jwks_cache_s``; a token signed with an unknown ``kid`` triggers one early refetch (key
rotation at the identity provider), at most every ``_REFETCH_S`` seconds so garbage tokens
cannot turn the gateway into a JWKS hammer.  Only the asymmetric algorithms listed in
``algorithms`` are accepted: ``none`` and HMAC never are (an HMAC "secret" would be the public
key).  Every failure is a 401 whose message says what was wrong, never the token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import jwt
import orjson
from attrs import define

from vmx_core.config.models import OidcConfig, UserConfig
from vmx_core.errors import AuthenticationFailed, ProviderError
from vmx_core.http import Response, fetch
from vmx_core.security.principal import Principal

_REFETCH_S = 10.0
#: A discovery document or key set is a few KiB; more is not an identity provider's answer.
_MAX_DOCUMENT = 1024 * 1024


def _json(resp: Response) -> Any:
    if resp.status != 200:
        raise ValueError(f"HTTP {resp.status}")
    return orjson.loads(resp.body)


@define
class OidcVerifier:
    settings: OidcConfig
    _keys: dict[str, jwt.PyJWK] | None = None
    _fetched_at: float = 0.0
    _lock: asyncio.Lock | None = None

    async def _fetch(self) -> None:
        try:
            uri = self.settings.jwks_uri
            if uri is None:
                discovery = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
                uri = str(_json(await fetch(discovery, timeout=10, max_body=_MAX_DOCUMENT))["jwks_uri"])
            jwks = _json(await fetch(uri, timeout=10, max_body=_MAX_DOCUMENT))
            keys = {}
            for data in jwks.get("keys", []):
                try:
                    key = jwt.PyJWK(data)
                except jwt.PyJWTError:  # a key type this build cannot use: skip it, not the set
                    continue
                keys[str(data.get("kid", ""))] = key
        except (ProviderError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise AuthenticationFailed(f"cannot fetch the identity provider's keys ({type(exc).__name__})") from None
        self._keys, self._fetched_at = keys, time.monotonic()

    async def _key(self, kid: str) -> jwt.PyJWK:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            stale = self._keys is None or age > self.settings.jwks_cache_s
            unknown = self._keys is not None and kid not in self._keys and age > _REFETCH_S
            if stale or unknown:
                await self._fetch()
        assert self._keys is not None
        key = self._keys.get(kid) or (self._keys.get("") if len(self._keys) == 1 else None)
        if key is None:
            raise AuthenticationFailed("the token is signed with an unknown key")
        return key

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, once signature, ``iss``, ``aud`` and ``exp`` are checked."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("the bearer token is not a JWT") from None
        alg = str(header.get("alg", ""))
        if alg not in self.settings.algorithms:
            raise AuthenticationFailed(f"token algorithm {alg!r} is not accepted")
        key = await self._key(str(header.get("kid", "")))
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.settings.audience, issuer=self.settings.issuer,
                leeway=self.settings.leeway_s, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed("the token is not for this audience") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed("the token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("the token's signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"the token is invalid ({type(exc).__name__})") from None
        return claims

    def principal(self, claims: Mapping[str, Any], users: Mapping[str, UserConfig]) -> Principal:
        """Roles: the claim's, plus ``default_roles``, plus the ``/v1/user`` assignment of ``sub`` or
        ``email``; workspaces = the assignment's memberships (``None``: not limited).

        The email counts only when the issuer vouches for it (``email_verified: true``): with an
        identity provider that lets users set their own email, anyone could otherwise claim
        another user's assignment, workspace included."""
        sub = str(claims.get("sub", ""))
        email = str(claims.get("email", "") or "") if claims.get("email_verified") is True else ""
        roles = set(self.settings.default_roles) | set(_claim(claims, self.settings.roles_claim))
        workspaces: set[str] | None = None
        for ident in (sub, email):
            assigned = users.get(ident) if ident else None
            if assigned is not None:
                roles |= set(assigned.roles)
                if assigned.workspaces is not None:
                    workspaces = (workspaces or set()) | set(assigned.workspaces)
        return Principal(email or sub, "oidc", frozenset(roles), None if workspaces is None else frozenset(workspaces))


def _claim(claims: Mapping[str, Any], path: str) -> list[str]:
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return []
        node = node.get(part)
    if isinstance(node, str):
        return node.split()
    if isinstance(node, list):
        return [str(v) for v in node if isinstance(v, str | int)]
    return []
