"""The Postgres audit store (psycopg 3, async): batched ``COPY``, daily partitions, retention by
dropping partitions.

Writes go through a per-connection temporary staging table: ``COPY`` into it, then one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.  ``COPY`` alone is fastest but cannot skip
duplicates, and a batch whose commit succeeded but whose acknowledgement was lost (the outage
case) is spooled and replayed: the staging step keeps that replay idempotent at COPY speed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from attrs import define, field

from vmx_core.audit.migrations import migrations
from vmx_core.audit.query import AuditQuery, UsageQuery
from vmx_core.audit.rows import (
    COLUMNS,
    PAYLOAD_COLUMNS,
    Row,
    iso,
    json_or_null,
    parse_iso,
    payload_rows,
    stored_values,
)
from vmx_core.audit.sql import Dialect, audit_sql, usage_rows, usage_sql
from vmx_core.errors import AuditStoreError, ConfigError

try:
    import psycopg
except ImportError:  # pragma: no cover - the postgres extra is not installed
    psycopg = None  # type: ignore[assignment]

_DIALECT = Dialect("postgres")
_PARTITIONED = ("request_audit", "request_audit_payload")
_PARTITION = re.compile(r"^(request_audit|request_audit_payload)_p(\d{8})$")
_COLS = ", ".join(f'"{c}"' for c in COLUMNS)
_TIMESTAMP = COLUMNS.index("timestamp")
_PAYLOAD_COLS = ", ".join(f'"{c}"' for c in PAYLOAD_COLUMNS)
_INSERT_STAGED = f"INSERT INTO request_audit ({_COLS}) SELECT {_COLS} FROM vmx_audit_stage ON CONFLICT DO NOTHING"
_INSERT_STAGED_PAYLOAD = (
    f"INSERT INTO request_audit_payload ({_PAYLOAD_COLS}) SELECT {_PAYLOAD_COLS} FROM vmx_payload_stage"
    " ON CONFLICT DO NOTHING"
)
#: Serialises DDL (migrations, partition creation) across every gateway process.
_DDL_LOCK = 0x766D78_0001


@define
class PostgresStore:
    uri: str
    kind: str = "postgres"
    connect_timeout: int = 5
    _conn: Any = None
    _staged: bool = False
    _days: set[dt.date] = field(factory=set)

    def __attrs_post_init__(self) -> None:
        if psycopg is None:
            raise ConfigError("storage.audit is postgresql:// but psycopg is not installed: pip install 'vmx[postgres]'",
                              "$.storage.audit")

    # -- connections ---------------------------------------------------------------------------

    async def _connect(self) -> Any:
        return await psycopg.AsyncConnection.connect(self.uri, autocommit=True, connect_timeout=self.connect_timeout)

    @asynccontextmanager
    async def _writer(self, what: str) -> AsyncIterator[Any]:
        """The writer's own connection, re-opened after any failure."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn, self._staged, self._days = await self._connect(), False, set()
            yield self._conn
        except (psycopg.Error, OSError) as exc:
            await self._drop_connection()
            raise _wrap(what, exc) from exc

    @asynccontextmanager
    async def _reader(self, what: str) -> AsyncIterator[Any]:
        """A short-lived connection for a query, so reads never queue behind the writer."""
        try:
            async with await self._connect() as conn:
                yield conn
        except (psycopg.Error, OSError) as exc:
            raise _wrap(what, exc) from exc

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except (psycopg.Error, OSError):  # it is already broken; nothing more to do
                pass

    # -- schema --------------------------------------------------------------------------------

    async def connect(self) -> None:
        await self.migrate()
        today = dt.datetime.now(dt.UTC).date()
        async with self._writer("create partitions") as conn, conn.transaction():
            await self._ensure_days(conn, {today, today + dt.timedelta(days=1)})

    async def migrate(self) -> list[int]:
        applied = []
        async with self._writer("migrate") as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS vmx_schema_migrations (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for mig in migrations("postgres"):
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                    cur = await conn.execute("SELECT 1 FROM vmx_schema_migrations WHERE version = %s", (mig.version,))
                    if await cur.fetchone() is None:
                        for statement in mig.statements():
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO vmx_schema_migrations (version, name) VALUES (%s, %s)", (mig.version, mig.name)
                        )
                        applied.append(mig.version)
        return applied

    async def _ensure_days(self, conn: Any, days: set[dt.date]) -> None:
        missing = days - self._days
        if not missing:
            return
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        for day in sorted(missing):
            lo, hi = day.isoformat(), (day + dt.timedelta(days=1)).isoformat()
            for table in _PARTITIONED:
                # Names and bounds come from a date, never from input.
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {table}_p{day:%Y%m%d} PARTITION OF {table}"
                    f" FOR VALUES FROM ('{lo} 00:00:00+00') TO ('{hi} 00:00:00+00')"
                )
        self._days |= missing

    # -- writing -------------------------------------------------------------------------------

    async def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        values = [_db_values(r) for r in rows]
        bodies = [
            (p["id"], parse_iso(p["timestamp"]), *(json_or_null(p.get(c)) for c in PAYLOAD_COLUMNS[2:]))
            for p in payload_rows(rows)
        ]
        days = {_day(v[_TIMESTAMP]) for v in values}
        async with self._writer("write") as conn:
            if not self._staged:
                await conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS vmx_audit_stage (LIKE request_audit) ON COMMIT DELETE ROWS"
                )
                await conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS vmx_payload_stage (LIKE request_audit_payload)"
                    " ON COMMIT DELETE ROWS"
                )
                self._staged = True
            try:
                async with conn.transaction():
                    await self._ensure_days(conn, days)
                    async with conn.cursor().copy(f"COPY vmx_audit_stage ({_COLS}) FROM STDIN") as copy:
                        for v in values:
                            await copy.write_row(v)
                    await conn.execute(_INSERT_STAGED)
                    if bodies:
                        async with conn.cursor().copy(f"COPY vmx_payload_stage ({_PAYLOAD_COLS}) FROM STDIN") as copy:
                            for b in bodies:
                                await copy.write_row(b)
                        await conn.execute(_INSERT_STAGED_PAYLOAD)
            except asyncio.CancelledError:
                # Cancelled while a command was in flight, the rollback above could not be sent
                # ("another command is already in progress"): the connection is not reused.
                await self._drop_connection()
                raise

    async def drop_older_than(self, cutoff: dt.datetime) -> int:
        """Drop every daily partition that ends at or before ``cutoff``'s day."""
        dropped = 0
        async with self._writer("retention") as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            cur = await conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent IN ('request_audit'::regclass, 'request_audit_payload'::regclass)"
            )
            for (name,) in await cur.fetchall():
                m = _PARTITION.match(name)
                if m is None:
                    continue
                day = dt.datetime.strptime(m.group(2), "%Y%m%d").date()
                if day + dt.timedelta(days=1) <= cutoff.astimezone(dt.UTC).date():
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")
                    self._days.discard(day)
                    dropped += 1
        return dropped

    # -- reading -------------------------------------------------------------------------------

    async def fetch(self, query: AuditQuery) -> list[Row]:
        sql, params = audit_sql(_DIALECT, query)
        async with self._reader("audit query") as conn:
            cur = await conn.execute(sql, params)
            raw = await cur.fetchall()
        return [_from_db(r) for r in raw]

    async def fetch_payload(self, workspace: str, environment: str, request_id: str) -> Row | None:
        sql = (
            "SELECT p.id, p.\"timestamp\", p.client_body, p.upstream_body, p.response_body"
            " FROM request_audit_payload p JOIN request_audit a ON a.id = p.id AND a.\"timestamp\" = p.\"timestamp\""
            " WHERE p.id = %s::uuid AND a.workspace = %s AND a.environment = %s"
        )
        async with self._reader("payload query") as conn:
            cur = await conn.execute(sql, (request_id, workspace, environment))
            raw = await cur.fetchone()
        if raw is None:
            return None
        row = dict(zip(PAYLOAD_COLUMNS, raw, strict=True))
        row["id"], row["timestamp"] = str(row["id"]), iso(row["timestamp"])
        return row

    async def usage(self, query: UsageQuery) -> list[dict[str, Any]]:
        sql, params = usage_sql(_DIALECT, query)
        async with self._reader("usage query") as conn:
            cur = await conn.execute(sql, params)
            raw = [tuple(float(v) if isinstance(v, Decimal) else v for v in r) for r in await cur.fetchall()]
        return usage_rows(query, raw, lambda b: iso(b.replace(tzinfo=dt.UTC)))

    async def aclose(self) -> None:
        await self._drop_connection()


def _wrap(what: str, exc: BaseException) -> AuditStoreError:
    # The message names the error class and SQLSTATE only: driver messages may echo the DSN.
    state = getattr(getattr(exc, "diag", None), "sqlstate", None)
    return AuditStoreError(f"postgres audit store: {what} failed: {type(exc).__name__}" + (f" ({state})" if state else ""))


def _db_values(row: Row) -> list[Any]:
    # JSON as text: COPY's text format has the server parse it into jsonb, so the stdlib
    # encoder that a ``Jsonb`` wrapper would call for each value is never needed.
    values = stored_values(row)
    stamp = values[_TIMESTAMP]
    if not _canonical(stamp):
        values[_TIMESTAMP] = parse_iso(stamp)
    return values


def _canonical(stamp: Any) -> bool:
    """Whether ``stamp`` is :func:`~vmx_core.audit.rows.iso` text (UTC, to the microsecond), which
    COPY hands to Postgres as it is, and whose first ten characters are its day."""
    return isinstance(stamp, str) and len(stamp) == 27 and stamp[-1] == "Z"


def _day(stamp: str | dt.datetime) -> dt.date:
    if isinstance(stamp, str):
        return dt.date.fromisoformat(stamp[:10])
    return stamp.astimezone(dt.UTC).date()


def _from_db(raw: Sequence[Any]) -> Row:
    row = dict(zip(COLUMNS, raw, strict=True))
    row["id"] = str(row["id"])
    row["timestamp"] = iso(row["timestamp"])
    if isinstance(row["cost"], Decimal):
        row["cost"] = float(row["cost"])
    return row
