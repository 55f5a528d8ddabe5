"""The config store in Postgres (``storage.config: database``, in the audit database).

Writers serialise on the row lock of ``vmx_config_head``: each write reads every object,
checks its precondition (``If-Match``), lets the caller validate the whole resulting config,
writes the object and its history row, bumps the global version and ``NOTIFY``s it — all in
one transaction, so the notification is sent only if the change committed.  Every gateway
process ``LISTEN``s and reloads on each version it has not seen yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from attrs import define

from vmx_core.errors import ConfigError, ConfigStoreError
from vmx_core.store.base import Check, Expect
from vmx_core.store.memory import applied, precondition
from vmx_core.store.objects import Key, Stored

try:
    import psycopg
    from psycopg.types.json import Jsonb
except ImportError:  # pragma: no cover - the postgres extra is not installed
    psycopg = None  # type: ignore[assignment]

CHANNEL = "vmx_config"
_SELECT = "SELECT kind, workspace, environment, name, body, version FROM vmx_config_object"


def _wrap(what: str, exc: BaseException) -> ConfigStoreError:
    # SQLSTATE and class only: a driver message may quote the DSN (and its password).
    state = getattr(getattr(exc, "diag", None), "sqlstate", None)
    return ConfigStoreError(f"config store: {what} failed: {type(exc).__name__}" + (f" ({state})" if state else ""))


def _rows(raw: Iterable[Any]) -> dict[Key, Stored]:
    out = {}
    for kind, ws, env, name, body, version in raw:
        key = Key(kind, ws, env, name)
        out[key] = Stored(key, body, int(version))
    return out


@define
class PostgresConfigStore:
    uri: str
    kind: str = "postgres"
    #: How long the listener waits before reconnecting after losing the database.
    reconnect_s: float = 0.5

    def __attrs_post_init__(self) -> None:
        if psycopg is None:
            raise ConfigError("storage.config is database but psycopg is not installed: pip install 'vmx[postgres]'",
                              "$.storage.config")

    @asynccontextmanager
    async def _conn(self, what: str) -> AsyncIterator[Any]:
        try:
            async with await psycopg.AsyncConnection.connect(self.uri, connect_timeout=5) as conn:
                yield conn
        except (psycopg.Error, OSError) as exc:
            raise _wrap(what, exc) from None

    async def start(self) -> None:
        # The schema is the audit database's: one migration runner for both.
        from vmx_core.audit.postgres import PostgresStore

        audit = PostgresStore(self.uri)
        try:
            await audit.migrate()
        finally:
            await audit.aclose()

    async def snapshot(self) -> tuple[int, list[Stored]]:
        async with self._conn("read") as conn:
            await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            async with conn.transaction():
                head = await (await conn.execute("SELECT version FROM vmx_config_head WHERE id = 1")).fetchone()
                rows = _rows(await (await conn.execute(_SELECT)).fetchall())
        return int(head[0]), list(rows.values())

    async def get(self, key: Key) -> Stored | None:
        async with self._conn("read") as conn:
            cur = await conn.execute(
                _SELECT + " WHERE kind = %s AND workspace = %s AND environment = %s AND name = %s",
                (key.kind, key.workspace, key.environment, key.name),
            )
            return _rows(await cur.fetchall()).get(key)

    async def write(self, key: Key, body: dict[str, Any] | None, expect: Expect, check: Check,
                    actor: str) -> Stored | None:
        async with self._conn("write") as conn, conn.transaction():
            version, rows = await self._lock(conn)
            precondition(rows.get(key), key, expect)
            new = applied(rows, key, body, version + 1)
            check(list(new.values()))
            gone = [k for k in rows if k not in new]
            await self._save(conn, [new[key]] if body is not None else [], gone, version + 1)
            await conn.execute(
                "INSERT INTO vmx_config_change (version, kind, workspace, environment, name, op, body, actor)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (version + 1, key.kind, key.workspace, key.environment, key.name,
                 "delete" if body is None else ("update" if key in rows else "create"),
                 None if body is None else Jsonb(body), actor),
            )
        return new.get(key)

    async def replace_all(self, rows: list[tuple[Key, dict[str, Any]]], check: Check, actor: str) -> int:
        async with self._conn("import") as conn, conn.transaction():
            version, old = await self._lock(conn)
            new = {k: Stored(k, b, version + 1) for k, b in rows}
            check(list(new.values()))
            await self._save(conn, list(new.values()), [k for k in old if k not in new], version + 1)
            await conn.execute(
                "INSERT INTO vmx_config_change (version, kind, workspace, environment, name, op, body, actor)"
                " VALUES (%s, 'all', '', '', '', 'import', NULL, %s)", (version + 1, actor))
        return version + 1

    async def _lock(self, conn: Any) -> tuple[int, dict[Key, Stored]]:
        head = await (await conn.execute("SELECT version FROM vmx_config_head WHERE id = 1 FOR UPDATE")).fetchone()
        return int(head[0]), _rows(await (await conn.execute(_SELECT)).fetchall())

    async def _save(self, conn: Any, upserts: list[Stored], deletes: list[Key], version: int) -> None:
        for k in deletes:
            await conn.execute(
                "DELETE FROM vmx_config_object WHERE kind = %s AND workspace = %s AND environment = %s AND name = %s",
                (k.kind, k.workspace, k.environment, k.name),
            )
        for row in upserts:
            await conn.execute(
                "INSERT INTO vmx_config_object (kind, workspace, environment, name, body, version)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (kind, workspace, environment, name)"
                " DO UPDATE SET body = EXCLUDED.body, version = EXCLUDED.version, updated_at = now()",
                (row.key.kind, row.key.workspace, row.key.environment, row.key.name, Jsonb(row.body), version),
            )
        await conn.execute("UPDATE vmx_config_head SET version = %s WHERE id = 1", (version,))
        # Delivered at commit, and only if the transaction commits.
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(version)))

    async def changes(self) -> AsyncIterator[int]:
        """Each committed version; after a lost connection, the current version at once
        (notifications sent meanwhile are gone, so the caller re-reads)."""
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.uri, autocommit=True, connect_timeout=5) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if not first:
                        head = await (await conn.execute("SELECT version FROM vmx_config_head WHERE id = 1")).fetchone()
                        assert head is not None  # the migration inserts the row
                        yield int(head[0])
                    first = False
                    async for note in conn.notifies():
                        yield int(note.payload)
            except (psycopg.Error, OSError):
                first = False
                await asyncio.sleep(self.reconnect_s)  # the database is away: try again shortly

    async def aclose(self) -> None:
        return None
