"""A request leaves no reference cycle behind: everything it allocated is freed by reference
counting, which is what lets ``vmx serve`` run the garbage collector rarely (issue 9)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import orjson
import pytest

from tests.conftest import KEY, base_config
from vmx_core import Gateway
from vmx_core.config import config_from_dict
from vmx_server.app import create_app

PATH = "/v1/completion/acme/prod/chat/completions"


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """``gc.garbage`` while every unreachable object is kept there instead of freed."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.fixture
async def app() -> AsyncIterator[Any]:
    limits = {"capacity": [{"period": "minute", "requests": 1000, "tokens": 1_000_000}]}
    cfg = base_config(resources={"chat": {"model": {"connection": "m", "model": "mock-1"}, **limits}})
    gateway = Gateway.from_config(config_from_dict(cfg, environ={}))
    async with gateway:
        yield create_app(gateway)


async def _call(app: Any, stream: bool) -> int:
    """One completion as hypercorn hands it over (``receive`` is a queue's ``get``); its status."""
    body = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
                         "vmx": {"correlationId": "c", "metadata": {"team": "t"}}})
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    queue.put_nowait({"type": "http.request", "body": body, "more_body": False})
    status: list[int] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": PATH, "raw_path": PATH.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080)}
    await asyncio.create_task(app(scope, queue.get, send))
    return status[0]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_completions_leave_no_cyclic_garbage(app: Any, saved_garbage: list[Any], stream: bool) -> None:
    """After warm-up, 50 completions (auth, limits, audit, the disconnect watch) leave nothing
    that only the cycle collector could free."""
    for _ in range(5):  # first calls fill caches (compiled rules, token tables, statements)
        assert await _call(app, stream) == 200
    gc.collect()
    saved_garbage.clear()
    for _ in range(50):
        assert await _call(app, stream) == 200
    gc.collect()
    assert [type(o).__qualname__ for o in saved_garbage] == []
