"""The built-in sink: off the request path, batched, spooled on failure, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import define

from tests.audit.conftest import make_row
from vmx_core.audit.query import AuditQuery
from vmx_core.audit.queue import QueueSink
from vmx_core.audit.rows import Row
from vmx_core.audit.spool import Spool
from vmx_core.audit.store import AuditStore, open_store
from vmx_core.errors import AuditStoreError
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway


@define
class FlakyStore:
    """Wraps a real store; ``down`` makes every write fail like an unreachable database."""

    inner: Any
    kind: str = "flaky"
    down: bool = False
    writes: int = 0

    async def connect(self) -> None:
        if self.down:
            raise AuditStoreError("down")
        await self.inner.connect()

    async def write(self, rows: Sequence[Row]) -> None:
        if self.down:
            raise AuditStoreError("down")
        self.writes += 1
        await self.inner.write(rows)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _all_ids(uri: str) -> list[str]:
    store: AuditStore = open_store(uri)
    await store.connect()
    try:
        return [r["id"] for r in await store.fetch(AuditQuery("test", "test", limit=1000))]
    finally:
        await store.aclose()


async def test_one_row_per_request_with_tokens_and_attempts(store_uri: str) -> None:
    """Each request leaves exactly one row with its tokens and every leg it tried."""
    from vmx_core.errors import UpstreamHTTPError

    fake = FakeProvider()
    fake.queue_error(UpstreamHTTPError(503, "down"))
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    async with make_test_gateway(fake, fallback=True, audit=store_uri) as gw:
        await gw.chat_completions("test", "test", body, api_key=TEST_KEY)
        chunks = [c async for c in gw.stream_chat_completions("test", "test", body, api_key=TEST_KEY)]
    assert chunks
    store = open_store(store_uri)
    await store.connect()
    rows = await store.fetch(AuditQuery("test", "test"))
    await store.aclose()
    assert len(rows) == 2
    streamed, plain = rows if rows[0]["stream"] else rows[::-1]
    assert [a["status"] for a in plain["attempts"]] == [503, 200]
    assert plain["model"] == "fake-2" and plain["status_code"] == 200
    assert plain["prompt_tokens"] == 1 and plain["completion_tokens"] == 2 and plain["total_tokens"] == 3
    assert streamed["stream"] is True and streamed["ttft_ms"] is not None


async def test_outage_spools_then_replays_every_row_once(tmp_path: Path) -> None:
    """Rows written while the database is down are spooled, then replayed exactly once."""
    uri = f"sqlite:///{tmp_path}/a.db"
    flaky = FlakyStore(open_store(uri))
    sink = QueueSink(flaky, Spool.open(tmp_path / "spool"), retry_min=0.01, retry_max=0.02)
    await sink.start()
    rows = [make_row(workspace="test", environment="test") for _ in range(300)]
    await flaky.inner.write(rows[:1])  # already stored before the outage: replay must skip it
    flaky.down = True
    # Prebuilt rows go through the writer's own batch step (enqueue takes AuditRecords).
    for chunk in (rows[:100], rows[100:200]):
        await sink._write(list(chunk))
    assert sink.counters.spooled == 200 and sink.spool.pending
    flaky.down = False
    await sink._write(list(rows[200:]))  # goes behind the spooled rows, keeping order
    await sink._replay()
    assert not sink.spool.pending
    assert sink.counters.replayed == 300
    await sink.aclose()
    ids = await _all_ids(uri)
    assert sorted(ids) == sorted(r["id"] for r in rows)


async def test_a_full_queue_spools_instead_of_dropping(tmp_path: Path) -> None:
    """With the queue full, records go to the spool; after shutdown every one is stored."""
    uri = f"sqlite:///{tmp_path}/a.db"
    fake = FakeProvider()
    gw = make_test_gateway(fake, audit=uri)
    async with gw:
        [sink] = gw.sinks
        assert isinstance(sink, QueueSink)
        sink.max_queue = 5
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        await asyncio.gather(*(gw.chat_completions("test", "test", body, api_key=TEST_KEY) for _ in range(50)))
        spooled = sink.counters.spooled
    assert spooled > 0
    # Shutdown replayed the spool: every request is stored once.
    assert len(await _all_ids(uri)) == 50
    assert not list((tmp_path / "a.db.spool").glob("spool-*"))
