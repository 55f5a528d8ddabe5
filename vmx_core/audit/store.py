"""What an audit database backend provides, and how ``storage.audit`` picks one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from vmx_core.audit.rows import Row
from vmx_core.errors import ConfigError

if TYPE_CHECKING:
    from vmx_core.audit.query import AuditQuery, UsageQuery


class AuditStore(Protocol):
    """A database holding ``request_audit``.  Every method raises
    :class:`~vmx_core.errors.AuditStoreError` (never a driver exception)."""

    #: ``sqlite`` or ``postgres``: the dialect of the usage SQL.
    kind: str

    async def connect(self) -> None:
        """Open the connection and apply pending migrations."""

    async def write(self, rows: Sequence[Row]) -> None:
        """Insert ``rows``; a row whose id is already stored is skipped (replay is idempotent)."""

    async def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied."""

    async def drop_older_than(self, cutoff: dt.datetime) -> int:
        """Retention: remove rows older than ``cutoff``; returns partitions/rows removed."""

    async def fetch(self, query: AuditQuery) -> list[Row]:
        """Rows matching an audit API query, newest first."""

    async def fetch_payload(self, workspace: str, environment: str, request_id: str) -> Row | None:
        """The stored bodies of one request of this tenant (``request_audit_payload``)."""

    async def usage(self, query: UsageQuery) -> list[dict[str, Any]]:
        """Aggregated, not yet zero-filled, usage rows (``bucket`` + dimensions + metrics)."""

    async def aclose(self) -> None: ...


def open_store(uri: str) -> AuditStore:
    """The built-in store for ``storage.audit`` = ``uri``."""
    if uri.startswith("sqlite://"):
        from vmx_core.audit.sqlite import SqliteStore

        return SqliteStore.from_uri(uri)
    if uri.startswith(("postgresql://", "postgres://")):
        from vmx_core.audit.postgres import PostgresStore

        return PostgresStore(uri)
    raise ConfigError(f"unsupported audit storage URI scheme in {_scheme(uri)!r}", "$.storage.audit")


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0] + "://" if "://" in uri else uri[:20]
