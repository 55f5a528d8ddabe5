"""The audit and usage APIs as plain async functions over a store (the shell maps HTTP)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmx_core.audit.query import AuditQuery, UsageQuery, encode_cursor, zero_fill
from vmx_core.audit.store import AuditStore
from vmx_core.errors import AuditStoreError

if TYPE_CHECKING:
    from vmx_core.gateway import Gateway


def find_store(gateway: Gateway) -> AuditStore:
    """The built-in sink's store; the audit and usage APIs read from it."""
    for sink in gateway.sinks:
        store = getattr(sink, "store", None)
        if store is not None and hasattr(store, "usage"):
            return store  # type: ignore[no-any-return]
    raise AuditStoreError("no audit store: storage.audit is none")


async def audit_page(store: AuditStore, query: AuditQuery) -> dict[str, Any]:
    """One page, newest first, and the cursor of the next page (null on the last)."""
    rows = await store.fetch(query)
    page, more = rows[: query.limit], len(rows) > query.limit
    cursor = encode_cursor(page[-1]["timestamp"], page[-1]["id"]) if more and page else None
    return {"data": page, "next_cursor": cursor}


async def usage_report(store: AuditStore, query: UsageQuery) -> dict[str, Any]:
    """Aggregates per bucket and dimension combination, empty buckets filled."""
    rows = await store.usage(query)
    return {
        "granularity": query.granularity,
        "start": query.start.isoformat().replace("+00:00", "Z"),
        "end": query.end.isoformat().replace("+00:00", "Z"),
        "dimensions": list(query.dimensions),
        "metrics": dict(query.metrics),
        "data": zero_fill(query, rows),
    }
