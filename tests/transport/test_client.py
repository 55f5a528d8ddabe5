"""vmx's upstream HTTP client against real servers on loopback: keep-alive, pool bounds,
streaming with back-pressure, deadlines, cancellation, TLS, and upstreams that misbehave."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes.loopback import LoopbackServer
from tests.transport.raw_server import RawServer, read_request, response
from vmx_core.errors import UpstreamConnectionError, UpstreamProtocolError, UpstreamTimeoutError
from vmx_core.http import Client
from vmx_core.http.connection import HIGH_WATER


class Echo(LoopbackServer):
    """An aiohttp upstream: echoes the request, streams chunks, counts connections."""

    def __init__(self) -> None:
        self.peers: set[tuple[str, int]] = set()
        self.first_chunk_seen = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/echo", self.echo)
        app.router.add_post("/v1/stream", self.stream)
        app.router.add_post("/v1/gzip", self.gzipped)

    async def echo(self, request: web.Request) -> web.Response:
        self.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        headers = {k.lower(): v for k, v in request.headers.items()}
        return web.json_response({"body": (await request.read()).decode(), "headers": headers, "path": request.path_qs})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: one\n\n")
        # The second chunk only follows once the client has seen the first: proves the
        # client hands chunks on as they arrive rather than buffering the whole body.
        await self.first_chunk_seen.wait()
        await resp.write(b"data: two\n\n")
        await resp.write_eof()
        return resp

    async def gzipped(self, request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b'{"ok": true}'), headers={"content-encoding": "gzip", "content-type": "application/json"})


@pytest.fixture
async def echo() -> Echo:
    server = Echo()
    await server.start()
    yield server  # type: ignore[misc]
    await server.stop()


async def test_requests_reuse_one_keep_alive_connection(echo: Echo) -> None:
    """Sequential requests travel on one pooled connection, with the body, default and
    per-request headers the caller gave, and the path as given."""
    client = Client(f"http://127.0.0.1:{echo.port}/v1/", {"Authorization": "Bearer sk-1"})
    try:
        for i in range(5):
            resp = await client.request("POST", "/echo?x=%3A", b'{"n": %d}' % i, {"x-request": str(i)}, timeout=5)
            data = resp.body.decode()
            assert resp.status == 200 and f'\\"n\\": {i}' in data
            assert '"authorization": "Bearer sk-1"' in data and f'"x-request": "{i}"' in data
            assert '"path": "/v1/echo?x=%3A"' in data
        resp = await client.request("POST", "/echo", b"{}", {"User-Agent": "custom/1", "Authorization": "Bearer sk-2"})
        assert '"user-agent": "custom/1"' in resp.body.decode() and '"authorization": "Bearer sk-2"' in resp.body.decode()
        assert len(echo.peers) == 1
        assert client.pool.total == 1
    finally:
        await client.aclose()


async def test_a_stream_is_handed_on_chunk_by_chunk(echo: Echo) -> None:
    """A streamed body's pieces arrive while the upstream is still writing, and the connection
    goes back to the pool once the body is read to its end."""
    client = Client(f"http://127.0.0.1:{echo.port}/v1")
    try:
        resp = await client.request("POST", "/stream", b"{}", stream=True, timeout=5)
        assert resp.headers["content-type"] == "text/event-stream"
        pieces = []
        async for piece in resp:
            pieces.append(piece)
            echo.first_chunk_seen.set()
        assert b"".join(pieces) == b"data: one\n\ndata: two\n\n" and len(pieces) == 2
        resp.release()
        assert len(client.pool.idle) == 1
    finally:
        await client.aclose()


async def test_gzip_answers_are_decoded(echo: Echo) -> None:
    """A gzip-encoded answer reaches the provider decoded."""
    client = Client(f"http://127.0.0.1:{echo.port}/v1")
    try:
        assert (await client.request("POST", "/gzip", b"{}")).body == b'{"ok": true}'
    finally:
        await client.aclose()


async def test_a_connection_the_upstream_closed_while_idle_is_replaced_transparently() -> None:
    """An upstream that closes each connection after its answer (without saying so) costs no
    request: the next one goes out on a new connection."""
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(b'{"ok": 1}'))
        await writer.drain()

    async with RawServer(once) as server:
        client = Client(server.url)
        try:
            for _ in range(3):
                assert (await client.request("POST", "/x", b"{}", timeout=5)).body == b'{"ok": 1}'
                await server.closed.wait()
                server.closed.clear()
            assert server.connections == 3
        finally:
            await client.aclose()


async def test_connection_close_and_http10_answers_are_not_reused() -> None:
    """``connection: close`` and an until-close body end the connection after the answer."""
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"whole\": true}")
        await writer.drain()

    async with RawServer(until_close) as server:
        client = Client(server.url)
        try:
            for _ in range(2):
                assert (await client.request("POST", "/x", b"{}", timeout=5)).body == b'{"whole": true}'
            assert server.connections == 2 and not client.pool.idle
        finally:
            await client.aclose()


async def test_the_pool_never_opens_more_than_its_limit() -> None:
    """Concurrent requests beyond ``max_connections`` wait for a free connection: the upstream
    never sees more than the limit open, and every request is answered."""
    release, both_busy = asyncio.Event(), asyncio.Event()
    waiting = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal waiting
        while True:
            await read_request(reader)
            waiting += 1
            if waiting == 2:
                both_busy.set()
            await release.wait()
            writer.write(response(b"{}"))
            await writer.drain()

    async with RawServer(slow) as server:
        client = Client(server.url, max_connections=2)
        try:
            calls = [asyncio.create_task(client.request("POST", "/x", b"{}", timeout=10)) for _ in range(7)]
            await both_busy.wait()  # the limit reached, five calls queued
            release.set()
            results = await asyncio.gather(*calls)
            assert [r.status for r in results] == [200] * 7
            assert server.max_open == 2 and server.connections == 2
        finally:
            await client.aclose()


async def test_a_deadline_fails_the_call_and_drops_its_connection() -> None:
    """An upstream that never answers is an UpstreamTimeoutError after ``timeout``, and its
    connection is closed (the upstream sees the disconnect)."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the client goes away

    async with RawServer(silent) as server:
        client = Client(server.url)
        try:
            with pytest.raises(UpstreamTimeoutError, match=r"timed out after 0\.2 s"):
                await client.request("POST", "/x", b"{}", timeout=0.2)
            await server.closed.wait()
            assert client.pool.total == 0
        finally:
            await client.aclose()


async def test_cancelling_a_stream_closes_its_connection(echo: Echo) -> None:
    """A caller cancelled mid-stream (its client left) closes the upstream connection, which is
    how the provider learns to stop generating."""
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"c\r\ndata: more\n\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async with RawServer(endless) as server:
        client = Client(server.url)
        try:
            resp = await client.request("POST", "/x", b"{}", stream=True, timeout=5)

            flowing = asyncio.Event()

            async def consume() -> None:
                async for _ in resp:
                    flowing.set()

            task = asyncio.create_task(consume())
            await flowing.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            resp.close()
            await server.closed.wait()
            assert client.pool.total == 0
        finally:
            await client.aclose()


async def test_a_slow_reader_pauses_the_socket_instead_of_buffering_everything() -> None:
    """A streamed body read slower than the upstream writes it is held back by TCP (the
    upstream's writes block) rather than buffered in the gateway without bound."""
    total = 32 * 1024 * 1024
    stalled = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def firehose() -> None:
        # A blocking server in its own thread: its send blocks only when vmx stops reading.
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(f"HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n".encode())
            conn.settimeout(0.5)
            block, sent = b"x" * 65536, 0
            while sent < total:
                try:
                    sent += conn.send(block[: total - sent])
                except TimeoutError:
                    stalled.set()  # half a second without room to write: the reader paused
                    conn.settimeout(None)

    thread = threading.Thread(target=firehose, daemon=True)
    thread.start()
    client = Client(f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        resp = await client.request("POST", "/x", b"{}", stream=True, timeout=5)
        chunks = aiter(resp)
        received = len(await anext(chunks))
        await asyncio.to_thread(stalled.wait)
        conn = resp._conn
        assert conn is not None and conn._paused
        assert conn._buffered <= HIGH_WATER + 512 * 1024
        async for piece in chunks:
            received += len(piece)
        assert received == total
    finally:
        await client.aclose()
        listener.close()
        thread.join()


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", UpstreamConnectionError, "before the response was complete"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab", UpstreamProtocolError, "conflicting"),
        (b"NOT HTTP AT ALL\r\n\r\n", UpstreamProtocolError, "status line"),
        (b"HTTP/1.1 200 OK\r\ncontent-encoding: zstd\r\ncontent-length: 2\r\n\r\nab", UpstreamProtocolError, "content-encoding"),
        (b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 2\r\n\r\nab", UpstreamProtocolError, "decompressed"),
        (b"", UpstreamConnectionError, "closed the connection"),
    ],
)
async def test_a_misbehaving_upstream_is_a_clear_vmx_error(answer: bytes, error: type[Exception], match: str) -> None:
    """Truncated, ambiguous, non-HTTP or undecodable answers (then a close) become the vmx
    error for them, with a message saying what was wrong."""
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with RawServer(bad) as server:
        client = Client(server.url)
        try:
            with pytest.raises(error, match=match):
                await client.request("POST", "/x", b"{}", timeout=5)
            assert client.pool.total == 0
        finally:
            await client.aclose()


async def test_a_refused_connection_is_an_upstream_connection_error() -> None:
    """Nothing listening: UpstreamConnectionError naming the failure."""
    async with RawServer(read_request) as server:  # type: ignore[arg-type]
        port = server.port
    client = Client(f"http://127.0.0.1:{port}")
    with pytest.raises(UpstreamConnectionError, match="upstream connection failed"):
        await client.request("POST", "/x", b"{}", timeout=5)
    assert client.pool.total == 0


async def test_a_header_that_would_split_the_request_is_never_sent() -> None:
    """A per-request header value holding CR LF is refused before anything is written."""
    async with RawServer(read_request) as server:  # type: ignore[arg-type]
        client = Client(server.url)
        with pytest.raises(UpstreamProtocolError, match="forbidden character"):
            await client.request("POST", "/x", b"{}", {"x-meta": "a\r\nGET /admin HTTP/1.1"})
        assert server.connections == 0


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmx-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_verifies_the_upstream_certificate(tmp_path: Path) -> None:
    """Over https the upstream's certificate is checked: trusted, the call goes through (and
    its connection is reused); untrusted (the system store), the call fails before sending."""
    cert, key = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(response(b'{"tls": true}'))
            await writer.drain()

    async with RawServer(ok, tls=server_tls) as server:
        trusting = Client(server.url, tls=ssl.create_default_context(cafile=str(cert)))
        try:
            for _ in range(2):
                assert (await trusting.request("POST", "/x", b"{}", timeout=5)).body == b'{"tls": true}'
            assert server.connections == 1
        finally:
            await trusting.aclose()
        default = Client(server.url)
        with pytest.raises(UpstreamConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await default.request("POST", "/x", b"{}", timeout=5)


def test_the_client_runs_on_uvloop() -> None:
    """On uvloop -- what ``vmx serve`` runs on, whose transports do not subclass asyncio's --
    whole and streamed answers arrive and the connection is reused."""
    import uvloop

    async def main() -> None:
        echo = Echo()
        await echo.start()
        client = Client(f"http://127.0.0.1:{echo.port}/v1")
        try:
            for _ in range(2):
                assert (await client.request("POST", "/echo", b"{}", timeout=5)).status == 200
            echo.first_chunk_seen.set()
            resp = await client.request("POST", "/stream", b"{}", stream=True, timeout=5)
            assert b"".join([piece async for piece in resp]) == b"data: one\n\ndata: two\n\n"
            resp.release()
            assert len(echo.peers) == 1
        finally:
            await client.aclose()
            await echo.stop()

    uvloop.run(main())


async def test_take_ready_hands_out_the_rest_of_a_read_once_and_in_order() -> None:
    """An SSE stream's ``take_ready`` returns the events parsed behind the one just handed out,
    in order, and iteration goes on with the next read, never repeating one."""
    from vmx_providers._http import HttpClient

    second = asyncio.Event()

    async def two_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"1b\r\ndata: 1\n\ndata: 2\n\ndata: 3\n\n\r\n")
        await writer.drain()
        await second.wait()
        writer.write(b"12\r\ndata: 4\n\ndata: 5\n\n\r\n0\r\n\r\n")
        await writer.drain()

    async with RawServer(two_reads) as server:
        http = HttpClient.create(server.url, {})
        try:
            stream = await http.open_sse("/x", {}, timeout=5)
            events = aiter(stream)
            assert (await anext(events)).data == "1" and stream.ready == 2
            assert [e.data for e in stream.take_ready()] == ["2", "3"] and stream.ready == 0
            assert stream.take_ready() == []
            second.set()
            assert [(await anext(events)).data, stream.ready] == ["4", 1]
            assert [e.data for e in [await anext(events)]] == ["5"]
            with pytest.raises(StopAsyncIteration):
                await anext(events)
            await stream.aclose()
        finally:
            await http.aclose()


async def test_a_provider_client_used_after_aclose_opens_a_new_pool(echo: Echo) -> None:
    """As with the aiohttp session it replaced: a provider's HTTP client closed (a reload) and
    then used again works on fresh connections instead of failing every call."""
    from vmx_providers._http import HttpClient

    http = HttpClient.create(f"http://127.0.0.1:{echo.port}/v1", {})
    reply = await http.post_json("/echo", {"n": 1}, timeout=5)
    assert reply.status == 200
    await http.aclose()
    reply = await http.post_json("/echo", {"n": 2}, timeout=5)
    assert reply.status == 200 and '"{\\"n\\":2}"' in reply.body.decode()
    await http.aclose()
