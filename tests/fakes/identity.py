"""A local OIDC identity provider for the tests: discovery, a JWKS, and a token minter."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.loopback import LoopbackServer

ISSUER_PATH = "/realms/test"


class FakeIdentityProvider(LoopbackServer):
    """Serves ``/.well-known/openid-configuration`` and ``/jwks`` on a loopback port."""

    def __init__(self, audience: str = "vmx-management") -> None:
        self.audience = audience
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self.jwks_fetches = 0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}{ISSUER_PATH}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get(ISSUER_PATH + "/.well-known/openid-configuration", self._discovery)
        app.router.add_get(ISSUER_PATH + "/jwks", self._jwks)

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response({"issuer": self.issuer, "jwks_uri": self.issuer + "/jwks"})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": [jwk]})

    def token(self, *, sub: str = "alice", expires_in: float = 300, audience: str | None = None,
              issuer: str | None = None, key: Any = None, algorithm: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": issuer or self.issuer, "aud": audience or self.audience, "sub": sub,
                   "iat": now, "exp": now + int(expires_in), **claims}
        return jwt.encode(payload, key if key is not None else self.key, algorithm=algorithm,
                          headers={"kid": self.kid})
