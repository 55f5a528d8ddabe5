"""The embedded default audit store: the stdlib ``sqlite3``, in WAL mode.

Batches are written on the event loop itself, by a connection of their own.  A writer thread
would need the GIL back after every SQLite call, and a busy event loop, which drops and retakes
the GIL around each of its system calls, starves it: a batch then took seconds and the queue
overflowed into the spool.  On the loop a batch of 64 rows costs about 0.3 ms, a larger one
yields to the loop between statements of 64, and the loop never waits for the disk or for
another process: that connection has no busy timeout (a locked database is retried
asynchronously) and leaves checkpoints (``fsync``) to the thread.

Everything else (queries, migrations, retention, checkpoints) runs on one dedicated thread with
a second connection, so a long usage query never holds up requests.  WAL mode lets other
processes (``vmx usage``, a second worker) read while the gateway writes.  ``:memory:`` is one
database per connection, so there a single connection does everything on the loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog
from attrs import define, field

from vmx_core.audit.migrations import migrations
from vmx_core.audit.query import AuditQuery, UsageQuery, bucket_start
from vmx_core.audit.rows import (
    COLUMNS,
    JSON_COLUMNS,
    PAYLOAD_COLUMNS,
    Row,
    iso,
    json_or_null,
    parse_iso,
    payload_rows,
    stored_values,
)
from vmx_core.audit.sql import Dialect, audit_sql, usage_rows, usage_sql
from vmx_core.errors import AuditStoreError

T = TypeVar("T")
log = structlog.get_logger("vmx.audit")

_DIALECT = Dialect("sqlite")
#: Rows per INSERT statement at most: about 0.3 ms of the event loop (fewer when SQLite allows
#: fewer parameters).
_MOST_ROWS = 64
#: How long a write waits, retrying, for another process' write transaction to end.
_BUSY_WAIT = 5.0
#: Seconds between two checkpoints (copying the WAL into the database) while rows are written.
_CHECKPOINT_EVERY = 1.0
_STREAM = COLUMNS.index("stream")
_PAYLOAD_BODIES = PAYLOAD_COLUMNS[2:]


@define
class SqliteStore:
    path: str
    kind: str = "sqlite"
    #: The writer's connection, used on the event loop only (``:memory:``: the only one).
    _conn: sqlite3.Connection | None = None
    #: The thread's connection.
    _reader: sqlite3.Connection | None = None
    _executor: ThreadPoolExecutor = field(factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="vmx-sqlite"))
    #: One write transaction at a time on the writer's connection.
    _writing: asyncio.Lock = field(factory=asyncio.Lock)
    _checkpoint: asyncio.Future[Any] | None = None
    _checkpointed: float = field(factory=time.monotonic)

    @classmethod
    def from_uri(cls, uri: str) -> SqliteStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``."""
        return cls(uri.removeprefix("sqlite://").removeprefix("/") or ":memory:")

    @property
    def _memory(self) -> bool:
        return self.path == ":memory:"

    async def _call(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the thread's connection, on the thread."""

        def run() -> T:
            if self._reader is None:
                self._reader = _open(self.path)
            return fn(self._reader)

        try:
            if self._memory:
                async with self._writing:  # never inside a write's transaction
                    return fn(self._writer())
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except sqlite3.Error as exc:
            raise _wrap(what, exc) from exc

    def _writer(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _open(self.path, on_loop=not self._memory)
        return self._conn

    async def connect(self) -> None:
        await self.migrate()

    async def migrate(self) -> list[int]:
        return await self._call("migrate", _migrate)

    async def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        async with self._writing:
            try:
                conn = self._writer()
                await _begin(conn)
                with _transaction_end(conn):
                    await _insert(conn, "request_audit", COLUMNS, rows, _db_values)
                    await _insert(conn, "request_audit_payload", PAYLOAD_COLUMNS, payload_rows(rows), _payload_values)
            except sqlite3.Error as exc:
                raise _wrap("write", exc) from exc
        if not self._memory and self._checkpoint is None and time.monotonic() - self._checkpointed >= _CHECKPOINT_EVERY:
            self._checkpointed = time.monotonic()
            self._checkpoint = asyncio.ensure_future(self._call("checkpoint", _checkpoint))
            self._checkpoint.add_done_callback(self._checkpoint_done)

    def _checkpoint_done(self, done: asyncio.Future[Any]) -> None:
        self._checkpoint = None
        if not done.cancelled() and done.exception() is not None:
            # The WAL only grows until the next one succeeds; the rows are committed already.
            log.warning("audit_checkpoint_failed", error=str(done.exception()))

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
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        async with self._writing:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        def close(conn: sqlite3.Connection) -> None:
            # The last connection to close checkpoints the WAL and removes it: on the thread.
            conn.close()
            self._reader = None

        if self._reader is not None:
            await self._call("close", close)
        self._executor.shutdown(wait=True)


#: An empty dictionary: its ``get``, in C, gives None for anything (what a ``None`` parameter
#: is adapted to: NULL, as without an adapter).
_NOTHING: dict[object, None] = {}


def _adapt_none_directly() -> None:
    """Register an adapter for ``None`` that gives ``None`` back, unless one is registered.

    Without one, Python 3.11's sqlite3 looks, for every ``None`` it binds, for an adapter in
    its registry, then for ``__adapt__`` on its protocol class -- a failed attribute lookup on
    a type, which builds and discards an ``AttributeError`` with its message -- then for
    ``__conform__`` on ``None``: about 0.16 µs per ``None``, and an audit row binds half a dozen
    (issue 9).  With the adapter the registry lookup finds it.  The registry is the sqlite3
    module's, shared by the process; what is bound does not change (NULL), and an adapter
    someone else registered for ``None`` is left in place."""
    if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(type(None), _NOTHING.get)


def _open(path: str, on_loop: bool = False) -> sqlite3.Connection:
    _adapt_none_directly()
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # The event loop never sleeps in SQLite's busy handler (_begin retries asynchronously).
        conn.execute(f"PRAGMA busy_timeout = {0 if on_loop else 5000}")
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
            # Durable enough with WAL: a power loss may lose the last commits, never corrupt.
            conn.execute("PRAGMA synchronous = NORMAL")
            if on_loop:
                # A checkpoint fsyncs: the thread runs them (_CHECKPOINT_EVERY), never a commit here.
                conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.create_function("vmx_bucket", 2, _bucket, deterministic=True)
        conn.create_aggregate("vmx_percentile", 2, _Percentile)  # type: ignore[arg-type]
    except BaseException:
        conn.close()
        raise
    return conn


def _wrap(what: str, exc: sqlite3.Error) -> AuditStoreError:
    return AuditStoreError(f"sqlite audit store: {what} failed: {type(exc).__name__}: {exc}")


def _checkpoint(conn: sqlite3.Connection) -> None:
    # PASSIVE: copies what no reader still needs, never waits for (or blocks) readers or the writer.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


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
    """One explicit transaction on the thread's connection, waiting up to ``busy_timeout`` for
    the write lock.  Connections are in autocommit mode (``isolation_level=None``), where ``with
    conn:`` opens none: every statement, and every row of an ``executemany``, would commit on
    its own."""
    conn.execute("BEGIN IMMEDIATE")
    with _transaction_end(conn):
        yield


@contextmanager
def _transaction_end(conn: sqlite3.Connection) -> Iterator[None]:
    """COMMIT the open transaction when the block completes, ROLLBACK when it raises or is
    cancelled."""
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # SQLite rolls some failures back by itself; a second ROLLBACK would hide the error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


async def _begin(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE (the write lock, up front) on the event loop: while another process
    writes, retried every few milliseconds for up to ``_BUSY_WAIT`` seconds, without blocking."""
    deadline, pause = time.monotonic() + _BUSY_WAIT, 0.001
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


async def _insert(conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: Sequence[Row],
                  values: Callable[[Row], list[Any]]) -> None:
    """``INSERT OR IGNORE`` ``rows``, converted by ``values``, many per statement: as many
    statements of the largest size as fit, then the powers of two of the rest (at most seven
    distinct statements per table, which sqlite3 keeps prepared).  The loop gets a turn between
    two statements."""
    most = min(_MOST_ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(columns))
    most = 1 << (most.bit_length() - 1)
    start = 0
    while start < len(rows):
        if start:
            await asyncio.sleep(0)
        left = len(rows) - start
        n = most if left >= most else 1 << (left.bit_length() - 1)
        params: list[Any] = []
        for row in rows[start:start + n]:
            params += values(row)
        conn.execute(_insert_sql(table, columns, n), params)
        start += n


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], rows: int) -> str:
    """``rows`` rows at once; a duplicate id, even within the statement, is skipped."""
    one = f"({', '.join('?' * len(columns))})"
    return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * rows)}"


def _db_values(row: Row) -> list[Any]:
    values = stored_values(row)
    values[_STREAM] = int(bool(values[_STREAM]))
    return values


def _payload_values(row: Row) -> list[Any]:
    return [row["id"], row["timestamp"], *(json_or_null(row.get(c)) for c in _PAYLOAD_BODIES)]


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
