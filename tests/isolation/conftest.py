"""One `vmx serve` over the two-tenant world for the whole package (see ``world.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from attrs import define

from tests.fakes.identity import FakeIdentityProvider
from tests.fakes.server import VmxProcess
from tests.isolation.world import ADMIN, seed
from tests.services.postgres import PostgresServer, postgres_server  # noqa: F401 (fixture)


@define
class World:
    proc: VmxProcess
    idp: FakeIdentityProvider
    http: aiohttp.ClientSession
    config: dict[str, Any]

    def token(self, user: str) -> str:
        """An OIDC token of ``user`` (the admin token for ``"admin"``)."""
        return ADMIN if user == "admin" else self.idp.token(sub=user)


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def world(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
                ) -> AsyncIterator[World]:
    """The gateway with workspaces alpha and beta, an identity provider and an HTTP client."""
    idp = FakeIdentityProvider()
    await idp.start()
    try:
        config = await seed(postgres_server, idp.issuer, idp.audience)
        proc = VmxProcess(config, Path(tmp_path_factory.mktemp("isolation")), {"VMX_ADMIN_TOKEN": ADMIN})
        await proc.start()
        try:
            async with aiohttp.ClientSession() as http:
                yield World(proc, idp, http, config)
        finally:
            await proc.stop()
        assert "unhandled_error" not in proc.output()
    finally:
        await idp.stop()
