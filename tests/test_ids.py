"""Request ids are UUIDv7: valid UUIDs, ordered by the millisecond they were made, never repeated."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from vmx_core.audit.query import AuditQuery
from vmx_core.audit.store import open_store
from vmx_core.ids import as_uuid, request_id
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway

BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def test_a_request_id_is_a_version_7_uuid_of_its_millisecond() -> None:
    """The id parses as an RFC 9562 version 7 UUID, prints back the same, and starts with its time."""
    now_ms = time.time_ns() // 1_000_000
    rid = request_id(now_ms)
    parsed = uuid.UUID(rid)
    assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, rid)
    assert parsed.int >> 80 == now_ms


def test_as_uuid_is_uuid_for_every_form_and_error() -> None:
    """The shortcut gives the UUID that UUID() gives (equal, same text, same safety), for a request
    id and for the other forms UUID() takes, and refuses what UUID() refuses."""
    rid = request_id()
    for text in (rid, rid.upper(), "{" + rid + "}", "urn:uuid:" + rid, rid.replace("-", "")):
        made, parsed = as_uuid(text), uuid.UUID(text)
        assert type(made) is uuid.UUID
        assert (made, str(made), made.is_safe, made.version) == (parsed, str(parsed), parsed.is_safe, 7)
    for bad in ("", rid[:-1], rid + "0", rid[:-1] + "g", "x" * 36):
        with pytest.raises(ValueError):
            uuid.UUID(bad)
        with pytest.raises(ValueError):
            as_uuid(bad)


def test_ids_sort_in_the_order_of_their_milliseconds() -> None:
    """An id made in a later millisecond sorts after an earlier one, as text and as a UUID."""
    ids = [request_id(ms) for ms in (1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000, 2**48 - 1)]
    assert sorted(ids) == ids
    assert sorted(ids, key=uuid.UUID) == ids


def test_ids_made_in_the_same_millisecond_are_all_distinct() -> None:
    """100,000 ids sharing one millisecond are all different: 74 random bits each."""
    assert len({request_id(1_700_000_000_000) for _ in range(100_000)}) == 100_000


async def test_a_request_s_header_and_audit_row_carry_one_version_7_id(tmp_path: Path) -> None:
    """x-vmx-request-id is a UUIDv7, and the request's audit row is stored under that same id."""
    uri = f"sqlite:///{tmp_path}/audit.db"
    async with make_test_gateway(FakeProvider(), audit=uri) as gw:
        answer = await gw.chat_completions("test", "test", BODY, api_key=TEST_KEY)
    rid = answer.headers["x-vmx-request-id"]
    store = open_store(uri)
    await store.connect()
    try:
        rows = await store.fetch(AuditQuery("test", "test"))
    finally:
        await store.aclose()
    assert uuid.UUID(rid).version == 7
    assert [r["id"] for r in rows] == [rid]


def test_a_forked_child_never_repeats_its_parents_ids() -> None:
    """Random bits are read from the OS ahead of use; a forked child reads its own, so ids the
    parent and the child make after the fork share no random part."""
    request_id(0)  # the parent now holds unread random bytes
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report five ids and leave at once
        os.close(read_end)
        os.write(write_end, "\n".join(request_id(0) for _ in range(5)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        theirs = pipe.read().split("\n")
    os.waitpid(pid, 0)
    ours = [request_id(0) for _ in range(5)]
    assert len(theirs) == 5 and not set(theirs) & set(ours)


def test_ids_keep_coming_across_refills_of_the_random_bytes() -> None:
    """Past the first page of random bytes ids stay well-formed and distinct."""
    ids = [request_id(1_700_000_000_000) for _ in range(2_000)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
