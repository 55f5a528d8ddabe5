"""The SQLite store writes on the event loop: it never blocks the loop, and its thread keeps the
WAL checkpointed."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from tests.audit.conftest import make_row
from vmx_core.audit import sqlite as sqlite_store
from vmx_core.audit.query import AuditQuery
from vmx_core.audit.sqlite import SqliteStore
from vmx_core.errors import AuditStoreError


def _size(path: Path) -> int:
    return path.stat().st_size


def _ids(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {i for (i,) in conn.execute("SELECT id FROM request_audit")}


async def _store(path: Path) -> SqliteStore:
    store = SqliteStore(str(path))
    await store.connect()
    return store


async def test_a_write_waits_for_another_process_writer_while_the_loop_runs_on(tmp_path: Path) -> None:
    """While another connection holds the write lock the write is pending and the loop keeps
    turning; once the lock is released the batch is stored."""
    store = await _store(tmp_path / "a.db")
    other = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        rows = [make_row() for _ in range(3)]
        task = asyncio.create_task(store.write(rows))
        turns = 0
        for _ in range(50):
            await asyncio.sleep(0)
            turns += 1
        assert not task.done() and turns == 50
        other.execute("COMMIT")
        await task
        stored = await store.fetch(AuditQuery("acme", "prod"))
        assert sorted(r["id"] for r in stored) == sorted(r["id"] for r in rows)
    finally:
        other.close()
        await store.aclose()


async def test_a_write_gives_up_when_the_lock_is_held_too_long(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the busy wait the write fails with AuditStoreError (the queue then spools the batch)
    and stores nothing; the next write, the lock free again, succeeds."""
    monkeypatch.setattr(sqlite_store, "_BUSY_WAIT", 0.02)
    store = await _store(tmp_path / "a.db")
    other = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(AuditStoreError, match="locked"):
            await store.write([make_row()])
        other.execute("COMMIT")
        row = make_row()
        await store.write([row])
        assert [r["id"] for r in await store.fetch(AuditQuery("acme", "prod"))] == [row["id"]]
    finally:
        other.close()
        await store.aclose()


async def test_the_thread_checkpoints_what_the_loop_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's commits stay in the WAL until the thread's checkpoint copies them into the
    database file."""
    monkeypatch.setattr(sqlite_store, "_CHECKPOINT_EVERY", 3600.0)
    store = await _store(tmp_path / "a.db")
    try:
        before = _size(tmp_path / "a.db")
        await store.write([make_row() for _ in range(500)])
        await store.write([make_row() for _ in range(500)])
        assert store._checkpoint is None and _size(tmp_path / "a.db") == before
        monkeypatch.setattr(sqlite_store, "_CHECKPOINT_EVERY", 0.0)
        await store.write([make_row()])
        assert store._checkpoint is not None
        await store._checkpoint
        assert _size(tmp_path / "a.db") > before + 100_000
    finally:
        await store.aclose()


async def test_two_workers_writing_one_file_at_once_store_every_row(tmp_path: Path) -> None:
    """Two stores on one file (two gateway workers) write batches at the same time: each waits
    its turn for the write lock, and every row of both is stored."""
    one, two = await _store(tmp_path / "a.db"), await _store(tmp_path / "a.db")
    try:
        batches = [[make_row() for _ in range(100)] for _ in range(20)]
        await asyncio.gather(*(store.write(b) for store, b in zip([one, two] * 10, batches, strict=True)))
        assert _ids(tmp_path / "a.db") == {r["id"] for b in batches for r in b}
    finally:
        await one.aclose()
        await two.aclose()


async def test_concurrent_writes_are_each_stored_whole(tmp_path: Path) -> None:
    """Two writes at once (the queue never does it, another caller might) take turns on the
    writer's connection: both batches are stored."""
    store = await _store(tmp_path / "a.db")
    try:
        first, second = [make_row() for _ in range(150)], [make_row() for _ in range(150)]
        await asyncio.gather(store.write(first), store.write(second))
        stored = await store.fetch(AuditQuery("acme", "prod", limit=500))
        assert sorted(r["id"] for r in stored) == sorted(r["id"] for r in first + second)
    finally:
        await store.aclose()


async def test_under_the_old_999_parameter_limit_a_batch_is_still_stored_whole(tmp_path: Path) -> None:
    """SQLite before 3.32 allows 999 parameters: statements then hold 32 rows, and a batch of 70
    is stored whole."""
    store = await _store(tmp_path / "a.db")
    try:
        store._writer().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        rows = [make_row() for _ in range(70)]
        await store.write(rows)
        stored = await store.fetch(AuditQuery("acme", "prod", limit=100))
        assert sorted(r["id"] for r in stored) == sorted(r["id"] for r in rows)
    finally:
        await store.aclose()


async def test_an_in_memory_store_reads_what_it_wrote() -> None:
    """``:memory:`` is one database per connection: its reads see its writes."""
    store = SqliteStore(":memory:")
    await store.connect()
    try:
        row = make_row()
        await store.write([row])
        assert await store.fetch(AuditQuery("acme", "prod")) == [row]
    finally:
        await store.aclose()


async def test_none_is_stored_as_null_through_the_direct_adapter(tmp_path: Path) -> None:
    """Once a store is open, ``None`` binds through the registered adapter and is still NULL:
    SQL ``IS NULL`` finds the row's empty columns, and the row reads back as written."""
    store = await _store(tmp_path / "audit.db")
    try:
        assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
        row = make_row(error_code=None, error_message=None, ttft_ms=None, cost=None)
        await store.write([row])
        with contextlib.closing(sqlite3.connect(tmp_path / "audit.db")) as conn:
            nulls = conn.execute(
                "SELECT error_code IS NULL, error_message IS NULL, ttft_ms IS NULL, cost IS NULL FROM request_audit"
            ).fetchall()
        assert nulls == [(1, 1, 1, 1)]
        assert await store.fetch(AuditQuery(row["workspace"], row["environment"])) == [row]
    finally:
        await store.aclose()


def test_an_adapter_for_none_registered_elsewhere_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store registers its adapter only when nobody has one for ``None``."""
    theirs = {}.get
    monkeypatch.setitem(sqlite3.adapters, (type(None), sqlite3.PrepareProtocol), theirs)
    sqlite_store._adapt_none_directly()
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)] is theirs
    monkeypatch.delitem(sqlite3.adapters, (type(None), sqlite3.PrepareProtocol))
    sqlite_store._adapt_none_directly()
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)] == sqlite_store._NOTHING.get
