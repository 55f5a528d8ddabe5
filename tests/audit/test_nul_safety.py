"""A NUL character anywhere in a request can neither stop audit rows nor break the audit API."""

from __future__ import annotations

import pytest

from vmx_core.audit.query import AuditQuery, UsageQuery, encode_cursor
from vmx_core.audit.store import open_store
from vmx_core.errors import InvalidRequest, NotFound
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway

BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_nul_in_a_tenant_name_does_not_stop_other_tenants_rows(store_uri: str) -> None:
    """A request naming `te<NUL>st` and a good one share a batch; both are stored, the first as `te\ufffdst`."""
    async with make_test_gateway(FakeProvider(), audit=store_uri) as gw:
        with pytest.raises(NotFound):
            await gw.chat_completions("te\x00st", "test", BODY, api_key=TEST_KEY)
        await gw.chat_completions("test", "test", {**BODY, "vmx": {"metadata": {"k\x00": "v\x00"}}},
                                  api_key=TEST_KEY)
    store = open_store(store_uri)
    await store.connect()
    try:
        good = await store.fetch(AuditQuery("test", "test"))
        refused = await store.fetch(AuditQuery.from_params("te\x00st", "test", {}))
        usage = await store.usage(UsageQuery.from_body("te\x00st", "test", {"dimensions": ["resource"]}))
    finally:
        await store.aclose()
    assert [r["status_code"] for r in good] == [200]
    assert [(r["workspace"], r["status_code"]) for r in refused] == [("te\ufffdst", 404)]
    assert sum(point["requests"] for point in usage) == 1


def test_audit_queries_take_nul_and_refuse_forged_cursors() -> None:
    """Query values holding NUL are matched NUL-safe; a cursor whose id is not a UUID is a 400."""
    query = AuditQuery.from_params("a\x00", "b", {"resource": "x\x00y", "correlation_id": "c\x00"})
    assert (query.workspace, query.filters[0].values, query.correlation_id) == ("a\ufffd", ("x\ufffdy",), "c\ufffd")
    with pytest.raises(InvalidRequest, match="cursor"):
        AuditQuery.from_params("a", "b", {"cursor": encode_cursor("2026-01-01T00:00:00Z", "not-a-uuid")})
    with pytest.raises(InvalidRequest, match="bogus: unknown key") as err:
        UsageQuery.from_body("a", "b", {"granularity": "hour", "bogus": 1})
    assert err.value.param == "bogus"
