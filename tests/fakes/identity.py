"""A local OIDC identity provider for the tests: discovery, a JWKS, and a token minter."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER_PATH = "/realms/test"


class FakeIdentityProvider:
    """Serves ``/.well-known/openid-configuration`` and ``/jwks`` on a loopback port."""

    def __init__(self, audience: str = "vmx-management") -> None:
        self.audience = audience
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self.jwks_fetches = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}{ISSUER_PATH}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(ISSUER_PATH + "/.well-known/openid-configuration", self._discovery)
        app.router.add_get(ISSUER_PATH + "/jwks", self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

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
