"""The ``redis://`` store's own Redis client (``vmx_core.capacity.resp``): RESP framing, replies
matched to callers on one pipelined connection, AUTH/SELECT, timeouts and reconnection, against
real redis-server processes."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.services.redis import RedisServer
from vmx_core.capacity.redis import RedisStore
from vmx_core.capacity.resp import ReplyParser, RespClient, RespError, encode_command
from vmx_core.capacity.store import CapacityStoreError
from vmx_core.capacity.window import Check, Window

replies = st.recursive(
    st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=40) | st.none(),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


def encode_reply(value: Any) -> bytes:
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if value is None:
        return b"$-1\r\n"
    return b"*%d\r\n" % len(value) + b"".join(encode_reply(v) for v in value)


@settings(max_examples=300, deadline=None)
@given(st.lists(replies, min_size=1, max_size=6), st.lists(st.integers(0, 2000), max_size=10))
def test_replies_split_anywhere_parse_to_the_same_values(values: list[Any], cuts: list[int]) -> None:
    """However the server's replies are split across reads, each comes out whole, in order."""
    wire = b"".join(encode_reply(v) for v in values)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    parser, out = ReplyParser(), []
    for a, b in itertools.pairwise(points):
        out += parser.feed(wire[a:b])
    assert out == values


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_from_the_server_is_an_os_error_or_value_error_only(data: bytes) -> None:
    """Bytes that are not RESP never escape as anything the connection does not handle."""
    try:
        ReplyParser().feed(data)
    except (OSError, ValueError):
        pass


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    """Every argument goes out length-prefixed, so keys and values cannot break the framing."""
    assert encode_command(("EVALSHA", "ab", 2, "k\r\n1", b"\x00", 7)) == (
        b"*6\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$4\r\nk\r\n1\r\n$1\r\n\x00\r\n$1\r\n7\r\n"
    )


async def test_concurrent_calls_each_get_their_own_reply(redis_url: str) -> None:
    """Hundreds of calls in flight on the one connection: every caller gets its own answer,
    and server errors reach only the caller that caused them."""
    client = RespClient(redis_url, timeout=5)
    try:
        calls = [client.eval("return ARGV[1]", 0, i) for i in range(300)]
        calls.append(client.eval("return redis.error_reply('MINE boom')", 0))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert results[:300] == [str(i).encode() for i in range(300)]
        assert isinstance(results[300], RespError) and str(results[300]) == "MINE boom"
        assert await client.eval("return 5", 0) == 5
    finally:
        await client.aclose()


async def test_a_call_past_its_timeout_fails_and_the_next_one_reconnects(redis_url: str) -> None:
    """A server that stops answering (CLIENT PAUSE) fails the call with TimeoutError within
    the timeout; once it answers again, the next call goes out on a new connection."""
    admin = RespClient(redis_url, timeout=5)
    client = RespClient(redis_url, timeout=0.2)
    try:
        assert await client.eval("return 1", 0) == 1
        first = client._conn
        assert await admin.execute("CLIENT", "PAUSE", 600, "ALL") == "OK"
        with pytest.raises(TimeoutError, match=r"within 0\.2 s"):
            await client.eval("return 2", 0)
        patient = RespClient(redis_url, timeout=5)
        assert await patient.eval("return 3", 0) == 3  # waits out the pause
        await patient.aclose()
        assert await client.eval("return 4", 0) == 4
        assert client._conn is not first
    finally:
        await client.aclose()
        await admin.aclose()


async def test_password_and_database_come_from_the_url(tmp_path: Path) -> None:
    """``redis://:password@host/db`` authenticates and selects the database; a wrong password
    is a CapacityStoreError from the store, never a driver error."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        setup = RespClient(f"redis://127.0.0.1:{server.port}", timeout=5)
        assert await setup.execute("SET", "where", "db0") == "OK"
        assert await setup.execute("CONFIG", "SET", "requirepass", "s3cret") == "OK"
        await setup.aclose()

        client = RespClient(f"redis://:s3cret@127.0.0.1:{server.port}/3", timeout=5)
        assert await client.execute("SET", "where", "db3") == "OK"
        assert await client.execute("GET", "where") == b"db3"
        await client.aclose()
        zero = RespClient(f"redis://default:s3cret@127.0.0.1:{server.port}/0", timeout=5)
        assert await zero.execute("GET", "where") == b"db0"
        await zero.aclose()

        store = RedisStore.from_uri(f"redis://:wrong@127.0.0.1:{server.port}/0")
        check = Check("vmx:t:{x}:k", Window.of("minute"), 10, None, 1, 0)
        with pytest.raises(CapacityStoreError, match="WRONGPASS"):
            await store.admit([check], 1_800_000_000.0)
        await store.aclose()
    finally:
        server.stop()


async def test_a_restarted_server_is_reconnected_to(tmp_path: Path) -> None:
    """The server goes away: calls fail with a CapacityStoreError; it comes back on its port:
    the store admits again without being rebuilt."""
    server = RedisServer(tmp_path)
    server.start()
    store = RedisStore.from_uri(server.url)
    check = Check("vmx:t:{y}:k", Window.of("minute"), 10, None, 1, 0)
    try:
        assert (await store.admit([check], 1_800_000_000.0)).admitted
        server.stop()
        with pytest.raises(CapacityStoreError):
            await store.admit([check], 1_800_000_000.0)
        server.start()
        assert (await store.admit([check], 1_800_000_000.0)).admitted
    finally:
        await store.aclose()
        server.stop()
