"""Nothing lost under load: a Postgres outage mid-flood, and SIGTERM mid-flood."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from tests.conftest import KEY, KEY_SHA
from tests.fakes.server import VmxProcess
from tests.services.postgres import PostgresServer
from vmx_core.audit.queue import QueueSink
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway

BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


async def flood(n: int, concurrency: int, one: Callable[[int], Awaitable[Any]],
                on_done: Callable[[int], None] = lambda done: None) -> list[Any]:
    """Run ``one(i)`` for i < n with ``concurrency`` workers; ``on_done`` sees the count finished."""
    results: list[Any] = [None] * n
    it = iter(range(n))
    done = 0

    async def worker() -> None:
        nonlocal done
        for i in it:
            results[i] = await one(i)
            done += 1
            on_done(done)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def stored_ids(uri: str) -> list[str]:
    with psycopg.connect(uri) as conn:
        return [str(r[0]) for r in conn.execute("SELECT id FROM request_audit")]


async def test_postgres_outage_during_2000_requests_stores_each_row_exactly_once(
    postgres_server: PostgresServer, postgres_uri: str
) -> None:
    """Postgres is stopped mid-flood and started again: all 2,000 rows end up in the table, once each."""
    gw = make_test_gateway(FakeProvider(), audit=postgres_uri)
    stopping: list[asyncio.Task[None]] = []

    def stop_at(done: int) -> None:
        if done == 500:  # the database goes away while requests keep coming
            stopping.append(asyncio.create_task(asyncio.to_thread(postgres_server.stop)))

    async with gw:
        [sink] = gw.sinks
        assert isinstance(sink, QueueSink)
        sink.retry_min, sink.retry_max = 0.02, 0.1
        replies = await flood(2000, 32, lambda i: gw.chat_completions("test", "test", BODY, api_key=TEST_KEY), stop_at)
        await stopping[0]
        await sink.drained()  # every row is written or spooled by now
        spooled_while_down = sink.counters.spooled
        await asyncio.to_thread(postgres_server.start)
    # aclose drained the queue and replayed the spool into the database that is back.
    ids = stored_ids(postgres_uri)
    assert spooled_while_down > 0 and sink.counters.replayed >= spooled_while_down
    assert len(ids) == 2000 and set(ids) == {r.headers["x-vmx-request-id"] for r in replies}
    assert not await asyncio.to_thread(lambda: list(Path("vmx-audit-spool").glob("spool-*")))


async def test_sigterm_during_load_loses_no_row(postgres_uri: str, tmp_path: Path) -> None:
    """``vmx serve`` is sent SIGTERM mid-flood: every request that got an answer has its row."""
    config = {
        "storage": {"audit": postgres_uri},
        "audit": {"spool_dir": str(tmp_path / "spool")},
        "workspaces": {"acme": {"environments": {"prod": {
            "connections": {"m": {"provider": "mock", "options": {"latency_ms": 5}}},
            "resources": {"chat": {"model": {"connection": "m", "model": "mock-1"}}},
            "api_keys": {"app": {"key_sha256": KEY_SHA, "resources": ["chat"]}},
        }}}},
    }
    (tmp_path / "vmx").mkdir()
    proc = VmxProcess(config, tmp_path / "vmx")
    await proc.start()
    answered: list[str] = []

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        try:
            async with http.post(proc.base_url() + "/chat/completions", json=BODY) as resp:
                await resp.read()
                answered.append(resp.headers["x-vmx-request-id"])
        except aiohttp.ClientError:  # refused or cut once the server stopped accepting
            pass

    def terminate(done: int) -> None:
        if done == 300:
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http:
        await flood(800, 24, lambda i: one(http, i), terminate)
    assert proc.proc is not None
    async with asyncio.timeout(30):  # the one SIGTERM is enough: it drains, flushes and exits
        assert await proc.proc.wait() == 0
    await proc.stop()
    ids = set(stored_ids(postgres_uri))
    assert len(answered) >= 300
    assert set(answered) <= ids  # every answered request was audited before the process exited
    assert not list((tmp_path / "spool").glob("spool-*"))
