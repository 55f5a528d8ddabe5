"""The audit stores (SQLite and Postgres): schema, idempotent writes, retention."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import pytest

from tests.audit.conftest import make_row
from vmx_core.audit.query import AuditQuery
from vmx_core.audit.rows import iso
from vmx_core.audit.store import AuditStore, open_store
from vmx_core.errors import AuditStoreError


async def test_migrations_are_versioned_and_idempotent(store_uri: str) -> None:
    """Migrating a fresh database applies every version once; migrating again applies none."""
    store = open_store(store_uri)
    try:
        first = await store.migrate()
        second = await store.migrate()
    finally:
        await store.aclose()
    # Postgres also holds the config store's tables (migration 2); SQLite only the audit trail.
    assert first == ([1] if store_uri.startswith("sqlite") else [1, 2])
    assert second == []


async def test_row_round_trips_with_every_column(store: AuditStore) -> None:
    """A written row reads back equal, JSON columns and all."""
    row = make_row(metadata={"team": "a"}, correlation_id="c1", cost=0.000125, ttft_ms=3.25, stream=True)
    await store.write([row])
    [back] = await store.fetch(AuditQuery("acme", "prod"))
    assert back == row


async def test_writing_the_same_row_twice_keeps_one(store: AuditStore) -> None:
    """Replay is idempotent by row id: a row written twice is stored once."""
    rows = [make_row() for _ in range(3)]
    extra = make_row()
    await store.write(rows)
    await store.write([rows[1], extra])
    found = await store.fetch(AuditQuery("acme", "prod", limit=100))
    assert sorted(r["id"] for r in found) == sorted(r["id"] for r in [*rows, extra])


async def test_a_large_batch_with_repeated_ids_stores_each_row_once(store: AuditStore) -> None:
    """73 rows (SQLite inserts them in statements of 64, 8 and 1) with ids repeated inside a
    statement and across statements: every row is stored, each once."""
    rows = [make_row() for _ in range(70)]
    await store.write([rows[0], *rows, rows[0], rows[40]])
    found = await store.fetch(AuditQuery("acme", "prod", limit=100))
    assert sorted(r["id"] for r in found) == sorted(r["id"] for r in rows)


async def test_a_batch_is_written_whole_or_not_at_all(store: AuditStore) -> None:
    """A batch failing on its last row (a value no driver can bind) stores none of its rows, and
    the next batch is written normally: one transaction per batch, on SQLite as on Postgres."""
    good, refused = make_row(), make_row(source_ip=object())
    with pytest.raises(AuditStoreError):
        await store.write([good, refused])
    assert await store.fetch(AuditQuery("acme", "prod")) == []
    await store.write([good])
    assert [r["id"] for r in await store.fetch(AuditQuery("acme", "prod"))] == [good["id"]]


async def test_a_write_cancelled_at_any_point_stores_its_batch_whole_or_not_at_all(store: AuditStore) -> None:
    """Cancelled after 0, 2, 4 ... event-loop turns (a shutdown mid-batch), a write leaves its
    batch stored whole or not at all, and the store's next write succeeds."""
    for turns in range(0, 40, 2):
        batch = [make_row(correlation_id=f"batch-{turns}") for _ in range(200)]
        task = asyncio.create_task(store.write(batch))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        probe = make_row(correlation_id=f"probe-{turns}")
        await store.write([probe])
        stored = await store.fetch(AuditQuery("acme", "prod", correlation_id=f"batch-{turns}", limit=500))
        assert len(stored) in (0, len(batch))
        assert [r["id"] for r in await store.fetch(AuditQuery("acme", "prod", correlation_id=f"probe-{turns}"))] == [
            probe["id"]
        ]


async def test_retention_removes_old_days_only(store: AuditStore) -> None:
    """Retention drops rows (Postgres: whole daily partitions) older than the cutoff."""
    now = dt.datetime.now(dt.UTC)
    old = make_row(timestamp=iso(now - dt.timedelta(days=10)))
    new = make_row(timestamp=iso(now))
    await store.write([old, new])
    removed = await store.drop_older_than(now - dt.timedelta(days=3))
    left = await store.fetch(AuditQuery("acme", "prod"))
    assert removed >= 1
    assert [r["id"] for r in left] == [new["id"]]


async def test_a_nul_character_does_not_poison_the_batch(store: AuditStore) -> None:
    """NUL in text or JSON (Postgres refuses it) is dropped; the batch with it is still written."""
    bad = make_row(metadata={"k": "a\x00b"}, error_message="x\x00y", correlation_id="c\x00")
    good = make_row()
    await store.write([bad, good])
    found = {r["id"]: r for r in await store.fetch(AuditQuery("acme", "prod"))}
    assert set(found) == {bad["id"], good["id"]}
    assert found[bad["id"]]["metadata"] == {"k": "ab"} and found[bad["id"]]["error_message"] == "xy"


async def test_the_text_backslash_u0000_is_stored_as_written(store: AuditStore) -> None:
    """The six characters \\u0000 (how JSON spells a NUL) are no NUL: kept as written, in text and JSON."""
    row = make_row(error_message="a\\u0000b", metadata={"k\\u0000": "\\u0000"})
    await store.write([row])
    [back] = await store.fetch(AuditQuery("acme", "prod"))
    assert back == row


async def test_postgres_stores_an_offset_timestamp_in_its_utc_day(postgres_uri: str) -> None:
    """A row whose timestamp is not iso() text (+02:00, just past midnight there) is stored as its
    UTC instant, in the daily partition of its UTC date."""
    store = open_store(postgres_uri)
    await store.connect()
    try:
        await store.write([make_row(timestamp="2026-01-02T01:30:00+02:00")])
        [back] = await store.fetch(AuditQuery("acme", "prod"))
    finally:
        await store.aclose()
    assert back["timestamp"] == "2026-01-01T23:30:00.000000Z"
