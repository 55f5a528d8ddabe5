"""Module-scoped variants of ``upstream`` and ``vmx_factory``, for test modules whose many
small tests share one fake upstream and one gateway (starting a gateway process costs more than
all their tests).  A module opts in with::

    pytestmark = pytest.mark.asyncio(loop_scope="module")
    from tests.e2e.module_fixtures import servers, upstream  # noqa: F401
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstream() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Callable[..., Awaitable[VmxProcess]]]:
    """Start gateways for the whole module: all are stopped after it."""
    started: list[VmxProcess] = []

    async def start(cfg: dict[str, Any], env: dict[str, str] | None = None) -> VmxProcess:
        proc = VmxProcess(cfg, Path(tmp_path_factory.mktemp("vmx")), env)
        await proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        await proc.stop()
