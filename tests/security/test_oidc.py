"""OIDC bearer tokens checked against a locally served JWKS."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.identity import FakeIdentityProvider
from vmx_core.config.models import OidcConfig, UserConfig
from vmx_core.errors import AuthenticationFailed
from vmx_core.security.oidc import OidcVerifier


@pytest.fixture
async def idp() -> AsyncIterator[FakeIdentityProvider]:
    """A local identity provider with discovery and a JWKS."""
    provider = FakeIdentityProvider()
    await provider.start()
    yield provider
    await provider.stop()


def verifier(idp: FakeIdentityProvider, **kw: object) -> OidcVerifier:
    return OidcVerifier(OidcConfig(issuer=idp.issuer, audience=idp.audience, leeway_s=0, **kw))  # type: ignore[arg-type]


def unsigned(idp: FakeIdentityProvider) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return part({"alg": "none", "typ": "JWT", "kid": idp.kid}) + "." + part(
        {"iss": idp.issuer, "aud": idp.audience, "sub": "mallory", "exp": 4_102_444_800}) + "."


async def test_a_valid_token_yields_its_claims_and_roles(idp: FakeIdentityProvider) -> None:
    """A token signed by the JWKS key, for our audience and issuer, is accepted; its roles
    combine the claim, default_roles and the /v1/user assignment."""
    v = verifier(idp, roles_claim="realm_access.roles", default_roles=["read-only"])
    claims = await v.verify(
        idp.token(email="alice@example.com", email_verified=True, realm_access={"roles": ["power-user"]})
    )
    assert claims["sub"] == "alice"
    who = v.principal(claims, {"alice@example.com": UserConfig(roles=["admin"], workspaces=["acme"])})
    assert who.id == "alice@example.com"
    assert who.roles == {"read-only", "power-user", "admin"} and who.workspaces == {"acme"}


async def test_an_unverified_email_claims_no_assignment(idp: FakeIdentityProvider) -> None:
    """Without `email_verified: true` the email is ignored: no one takes over another's roles."""
    v = verifier(idp, default_roles=["read-only"])
    users = {"alice@example.com": UserConfig(roles=["admin"], workspaces=["acme"])}
    for verified in (None, False, "true"):
        extra = {} if verified is None else {"email_verified": verified}
        claims = await v.verify(idp.token(sub="mallory", email="alice@example.com", **extra))
        who = v.principal(claims, users)
        assert who.id == "mallory" and who.roles == {"read-only"} and who.workspaces is None


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("expired", "expired"),
        ("wrong-audience", "not for this audience"),
        ("wrong-issuer", "another issuer"),
        ("wrong-signature", "signature is invalid"),
        ("alg-none", "'none' is not accepted"),
        ("hmac-with-public-key", "'HS256' is not accepted"),
        ("garbage", "not a JWT"),
    ],
)
async def test_bad_tokens_are_refused(idp: FakeIdentityProvider, case: str, message: str) -> None:
    """Each kind of bad token is a 401 saying what was wrong."""
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens = {
        "expired": lambda: idp.token(expires_in=-120),
        "wrong-audience": lambda: idp.token(audience="someone-else"),
        "wrong-issuer": lambda: idp.token(issuer="https://evil.example"),
        "wrong-signature": lambda: idp.token(key=other_key),
        "alg-none": lambda: unsigned(idp),
        "hmac-with-public-key": lambda: idp.token(key=b"k" * 32, algorithm="HS256"),
        "garbage": lambda: "not-a-token",
    }
    with pytest.raises(AuthenticationFailed, match=message):
        await verifier(idp).verify(tokens[case]())


async def test_the_jwks_is_fetched_once_and_cached(idp: FakeIdentityProvider) -> None:
    """Many verifications fetch the JWKS once (within jwks_cache_s)."""
    v = verifier(idp)
    for _ in range(5):
        await v.verify(idp.token())
    assert idp.jwks_fetches == 1


async def test_an_unreachable_issuer_is_a_401_not_a_crash() -> None:
    """When the JWKS cannot be fetched, the token is refused with a clear message."""
    v = OidcVerifier(OidcConfig(issuer="http://127.0.0.1:9/none", audience="x"))
    provider = FakeIdentityProvider()
    with pytest.raises(AuthenticationFailed, match="cannot fetch"):
        await v.verify(provider.token())
