"""The embedded default audit store: the stdlib ``sqlite3`` on one dedicated thread.

One connection, one thread: sqlite3 connections are not meant to be shared across threads, and
the writer's batches serialise anyway.  WAL mode lets other processes (``vmx usage``, a second
worker) read while the gateway writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from attrs import define, field

from vmx_core.audit.migrations import migrations
from vmx_core.audit.query import AuditQuery, UsageQuery, bucket_start
from vmx_core.audit.rows import (
    COLUMNS,
    JSON_COLUMNS,
    PAYLOAD_COLUMNS,
    Row,
    column_values,
    iso,
    json_text,
    parse_iso,
    payload_rows,
)
from vmx_core.audit.sql import Dialect, audit_sql, usage_rows, usage_sql
from vmx_core.errors import AuditStoreError

T = TypeVar("T")

_DIALECT = Dialect("sqlite")
#: Rows per INSERT: 32 rows of 31 parameters stay under the 999 bound of SQLite before 3.32.
_CHUNK = 32
_ATTEMPTS, _METADATA, _STREAM = (COLUMNS.index(c) for c in ("attempts", "metadata", "stream"))
_INSERT_PAYLOAD = (
    f"INSERT OR IGNORE INTO request_audit_payload ({', '.join(PAYLOAD_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(PAYLOAD_COLUMNS))})"
)
_PAYLOAD_BODIES = PAYLOAD_COLUMNS[2:]


@define
class SqliteStore:
    path: str
    kind: str = "sqlite"
    _conn: sqlite3.Connection | None = None
    _executor: ThreadPoolExecutor = field(factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="vmx-sqlite"))

    @classmethod
    def from_uri(cls, uri: str) -> SqliteStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``."""
        return cls(uri.removeprefix("sqlite://").removeprefix("/") or ":memory:")

    async def _call(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._conn is None:
                self._conn = _open(self.path)
            return fn(self._conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except sqlite3.Error as exc:
            raise AuditStoreError(f"sqlite audit store: {what} failed: {type(exc).__name__}: {exc}") from exc

    async def connect(self) -> None:
        await self.migrate()

    async def migrate(self) -> list[int]:
        return await self._call("migrate", _migrate)

    async def write(self, rows: Sequence[Row]) -> None:
        # Converted here, on the event loop, so the writer thread only runs SQLite.
        params: list[Any] = []
        for r in rows:
            params += _db_values(r)
        bodies = [
            (p["id"], p["timestamp"], *(_json_or_null(p.get(c)) for c in _PAYLOAD_BODIES)) for p in payload_rows(rows)
        ]

        def insert(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                # Up to _CHUNK rows per statement: sqlite3 drops and retakes the GIL around every
                # step, so a row per step would make this thread and the event loop trade the GIL
                # back and forth for each row.
                width = len(COLUMNS)
                for start in range(0, len(rows), _CHUNK):
                    n = min(_CHUNK, len(rows) - start)
                    conn.execute(_insert_sql(n), params[start * width:(start + n) * width])
                if bodies:
                    conn.executemany(_INSERT_PAYLOAD, bodies)

        await self._call("write", insert)

    async def drop_older_than(self, cutoff: dt.datetime) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                n = conn.execute("DELETE FROM request_audit WHERE timestamp < ?", (iso(cutoff),)).rowcount
                conn.execute("DELETE FROM request_audit_payload WHERE timestamp < ?", (iso(cutoff),))
            return n

        return await self._call("retention", delete)

    async def fetch(self, query: AuditQuery) -> list[Row]:
        sql, params = audit_sql(_DIALECT, query)
        raw = await self._call("audit query", lambda c: c.execute(sql, params).fetchall())
        return [_from_db(r) for r in raw]

    async def fetch_payload(self, workspace: str, environment: str, request_id: str) -> Row | None:
        sql = (
            "SELECT p.id, p.timestamp, p.client_body, p.upstream_body, p.response_body FROM request_audit_payload p"
            " JOIN request_audit a ON a.id = p.id WHERE p.id = ? AND a.workspace = ? AND a.environment = ?"
        )
        raw = await self._call("payload query", lambda c: c.execute(sql, (request_id, workspace, environment)).fetchone())
        if raw is None:
            return None
        row = dict(zip(PAYLOAD_COLUMNS, raw, strict=True))
        for c in _PAYLOAD_BODIES:
            row[c] = orjson.loads(row[c]) if row[c] is not None else None
        return row

    async def usage(self, query: UsageQuery) -> list[dict[str, Any]]:
        sql, params = usage_sql(_DIALECT, query)
        raw = await self._call("usage query", lambda c: c.execute(sql, params).fetchall())
        return usage_rows(query, raw, lambda b: b)

    async def aclose(self) -> None:
        def close(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        if self._conn is not None:
            await self._call("close", close)
        self._executor.shutdown(wait=True)


def _open(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
        # Durable enough with WAL: a power loss may lose the last commits, never corrupt.
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.create_function("vmx_bucket", 2, _bucket, deterministic=True)
    conn.create_aggregate("vmx_percentile", 2, _Percentile)  # type: ignore[arg-type]
    return conn


def _migrate(conn: sqlite3.Connection) -> list[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS vmx_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )
    applied = []
    for mig in migrations("sqlite"):
        # The write lock is taken first, so two processes never both apply it.
        with _transaction(conn):
            done = conn.execute("SELECT 1 FROM vmx_schema_migrations WHERE version = ?", (mig.version,)).fetchone()
            if done is None:
                for statement in mig.statements():
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO vmx_schema_migrations VALUES (?, ?, ?)",
                    (mig.version, mig.name, iso(dt.datetime.now(dt.UTC))),
                )
                applied.append(mig.version)
    return applied


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction.  The connection is in autocommit mode (``isolation_level=None``),
    where ``with conn:`` opens none: every statement, and every row of an ``executemany``, would
    commit on its own, paying a WAL commit per row.  ``IMMEDIATE`` takes the write lock up
    front (waiting up to ``busy_timeout`` for another process' writer)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # SQLite rolls some failures back by itself; a second ROLLBACK would hide the error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@functools.cache
def _insert_sql(rows: int) -> str:
    """``INSERT OR IGNORE`` of ``rows`` rows: a duplicate id, even inside one statement, is skipped."""
    one = f"({', '.join('?' * len(COLUMNS))})"
    return f"INSERT OR IGNORE INTO request_audit ({', '.join(COLUMNS)}) VALUES {', '.join([one] * rows)}"


def _db_values(row: Row) -> list[Any]:
    values = column_values(row)
    attempts, metadata = values[_ATTEMPTS], values[_METADATA]
    values[_ATTEMPTS] = json_text(attempts if attempts is not None else [])
    values[_METADATA] = json_text(metadata if metadata is not None else {})
    values[_STREAM] = int(bool(values[_STREAM]))
    return values


def _json_or_null(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


def _from_db(raw: Sequence[Any]) -> Row:
    row = dict(zip(COLUMNS, raw, strict=True))
    for c in JSON_COLUMNS:
        row[c] = orjson.loads(row[c])
    row["stream"] = bool(row["stream"])
    return row


def _bucket(timestamp: str, granularity: str) -> str:
    return iso(bucket_start(parse_iso(timestamp), granularity))


class _Percentile:
    """``percentile_cont``: linear interpolation between the closest ranks; nulls ignored."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.p = 0.5

    def step(self, value: float | None, p: float) -> None:
        self.p = p
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        return percentile_cont(self.values, self.p)


def percentile_cont(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = p * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
