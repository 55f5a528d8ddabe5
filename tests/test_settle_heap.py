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
from vmx_server.app import YOUNG_THRESHOLD, create_app


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual
    gc.set_threshold(*threshold)


async def _started_and_stopped(settle_heap: bool) -> tuple[int, int]:
    """Run the app's lifespan; the number of frozen objects while it was up, and the young
    generation's collection threshold then."""
    app = create_app(Gateway.from_config(config_from_dict(base_config(), environ={})), settle_heap=settle_heap)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    frozen, young = gc.get_freeze_count(), gc.get_threshold()[0]
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await task
    return frozen, young


async def test_a_settled_app_freezes_its_start_up_heap_with_the_token_tables_loaded() -> None:
    """Started with settle_heap, the heap so far (token tables included) is frozen and young
    objects are collected less often."""
    older = gc.get_threshold()[1:]
    frozen, young = await _started_and_stopped(settle_heap=True)
    assert frozen > 10_000  # modules, the rule grammar, the gateway's runtime
    assert tokens._loaded is not None
    assert young == YOUNG_THRESHOLD > 700
    assert gc.get_threshold()[1:] == older


async def test_an_embedded_app_leaves_the_collector_alone() -> None:
    """Without settle_heap (create_app's default) nothing is frozen, no threshold changed."""
    before = gc.get_threshold()
    assert await _started_and_stopped(settle_heap=False) == (0, before[0])
    assert gc.get_threshold() == before
