"""A write inside one workspace cannot reach into another one, nor learn about it from errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from vmx_core import Gateway
from vmx_core.config import config_from_dict
from vmx_core.errors import ConfigError, InvalidRequest, PermissionDenied
from vmx_core.security.apikeys import hash_key
from vmx_core.security.principal import ADMIN, Principal
from vmx_core.store.manage import Management
from vmx_core.store.service import ConfigService

BETA_KEY = "vmx_beta_key_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
MEMBER = Principal("alice", "oidc", frozenset({"admin"}), frozenset({"alpha"}))


def tenant(key: str) -> dict[str, Any]:
    return {"environments": {"prod": {
        "connections": {"m": {"provider": "mock"}},
        "resources": {"chat": {"model": {"connection": "m", "model": "mock-1"}}},
        "api_keys": {"app": {"key_sha256": hash_key(key), "resources": ["*"]}},
    }}}


def two_tenants() -> dict[str, Any]:
    return {"storage": {"audit": "none"},
            "workspaces": {"alpha": tenant("vmx_alpha_" + "a" * 40), "beta": tenant(BETA_KEY)},
            "users": {"alice": {"roles": ["admin"], "workspaces": ["alpha"]},
                      "zed-of-beta": {"roles": ["admin"], "workspaces": ["beta"]}}}


@pytest.fixture
async def management() -> AsyncIterator[Management]:
    """The management service over a file-store gateway with workspaces alpha and beta."""
    gw = Gateway.from_config(config_from_dict(two_tenants(), environ={}))
    async with gw:
        service = ConfigService.for_gateway(gw)
        await service.start()
        yield Management(service)
        await service.aclose()


def test_two_keys_with_one_hash_are_refused_at_each_copy() -> None:
    """`vmx check` refuses a config where two workspaces' keys share a hash, naming both paths."""
    raw = two_tenants()
    raw["workspaces"]["alpha"]["environments"]["prod"]["api_keys"]["copy"] = {"key_sha256": hash_key(BETA_KEY)}
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, environ={})
    assert sorted(p for p, _ in err.value.errors) == [
        "$.workspaces.alpha.environments.prod.api_keys.copy.key_sha256",
        "$.workspaces.beta.environments.prod.api_keys.app.key_sha256",
    ]


async def test_a_member_cannot_shadow_another_workspaces_key(management: Management) -> None:
    """Copying beta's public key hash into alpha is a 400 naming nothing of beta; beta's key still works."""
    with pytest.raises(InvalidRequest) as err:
        await management.create(MEMBER, "api-key", "alpha", "prod",
                                {"name": "copy", "key_sha256": hash_key(BETA_KEY), "resources": ["*"]})
    assert err.value.param == "$.key_sha256" and "beta" not in err.value.message
    management.service.gateway.authenticate(BETA_KEY, "beta", "prod")
    with pytest.raises(PermissionDenied):
        management.service.gateway.authenticate(BETA_KEY, "alpha", "prod")


async def test_errors_about_objects_the_caller_cannot_read_are_not_named(management: Management) -> None:
    """A member breaking users' memberships is told so without user ids; the admin sees the paths."""
    with pytest.raises(InvalidRequest) as member_err:
        await management.delete(MEMBER, "workspace", None, None, "alpha", None)
    assert "objects you cannot read" in member_err.value.message and "alice" not in member_err.value.message
    with pytest.raises(InvalidRequest) as admin_err:
        await management.delete(ADMIN, "workspace", None, None, "alpha", None)
    assert admin_err.value.param == "$.users.alice.workspaces[0]"
