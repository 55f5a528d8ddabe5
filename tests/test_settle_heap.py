"""``create_app(settle_heap=True)`` (what ``vmx serve`` runs) moves the start-up heap out of the
garbage collector's way once started; an embedding application's app leaves the collector alone."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import base_config
from vmx_core import Gateway, tokens
from vmx_core.config import config_from_dict
from vmx_server.app import create_app


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


async def _started_and_stopped(settle_heap: bool) -> int:
    """Run the app's lifespan; the number of frozen objects while it was up."""
    app = create_app(Gateway.from_config(config_from_dict(base_config(), environ={})), settle_heap=settle_heap)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    frozen = gc.get_freeze_count()
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await task
    return frozen


async def test_a_settled_app_freezes_its_start_up_heap_with_the_token_tables_loaded() -> None:
    """Started with settle_heap, the heap so far (token tables included) is frozen."""
    frozen = await _started_and_stopped(settle_heap=True)
    assert frozen > 10_000  # modules, the rule grammar, the gateway's runtime
    assert tokens._loaded is not None


async def test_an_embedded_app_leaves_the_collector_alone() -> None:
    """Without settle_heap (create_app's default) nothing is frozen."""
    assert await _started_and_stopped(settle_heap=False) == 0
