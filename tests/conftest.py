"""Shared fixtures: config builders, a started in-process gateway."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vmx_core import Gateway
from vmx_core.config import config_from_dict

KEY = "vmx_test_key_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
KEY_SHA = hashlib.sha256(KEY.encode()).hexdigest()


def base_config(**env_overrides: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "connections": {"m": {"provider": "mock"}},
        "resources": {"chat": {"model": {"connection": "m", "model": "mock-1"}}},
        "api_keys": {"app": {"key_sha256": KEY_SHA, "resources": ["chat"]}},
    }
    env.update(env_overrides)
    return {"workspaces": {"acme": {"environments": {"prod": env}}}}


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths (the default ``sqlite:///./vmx-audit.db`` and its spool) land in the
    test's own directory, never in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway.from_config(config_from_dict(base_config(), environ={}))
    async with gw:
        yield gw
