"""The HTTP/1.1 wire format of vmx's upstream client: request heads and the response parser."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.http.wire import (
    MAX_HEAD_BYTES,
    Head,
    HttpProtocolError,
    ResponseParser,
    decoder_for,
    encode_head,
    keeps_alive,
    parse_head,
)


class Collected:
    """What the parser reported, in order."""

    def __init__(self) -> None:
        self.heads: list[Head] = []
        self.body = b""
        self.done = 0

    def parser(self) -> ResponseParser:
        parser = ResponseParser(lambda head, kind: self.heads.append(head), self._body, self._done)
        parser.expect("POST")
        return parser

    def _body(self, data: bytes) -> None:
        assert not self.done, "body after the end of the response"
        self.body += data

    def _done(self) -> None:
        self.done += 1


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, rest = b"", body
    for size in sizes:
        if not rest:
            break
        piece, rest = rest[:size], rest[size:]
        out += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
    if rest:
        out += b"%X\r\n%s\r\n" % (len(rest), rest)
    return out + b"0\r\nx-trailer: yes\r\n\r\n"


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]


header_names = st.from_regex(r"x-[a-z0-9-]{1,12}", fullmatch=True)
header_values = st.from_regex(r"[ -~]{0,30}", fullmatch=True).map(str.strip)


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(200, 599).filter(lambda s: s not in (204, 304)),
    headers=st.dictionaries(header_names, header_values, max_size=6),
    body=st.binary(max_size=3000),
    framing=st.sampled_from(["length", "chunked", "close"]),
    sizes=st.lists(st.integers(1, 700), max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_any_response_split_anywhere_parses_to_its_head_and_body(
    status: int, headers: dict[str, str], body: bytes, framing: str, sizes: list[int], cuts: list[int]
) -> None:
    """However a response's bytes are split across reads, the parser reports its status, its
    headers and exactly its body, once, for every framing a server may use."""
    lines = [f"HTTP/1.1 {status} Whatever Reason", *(f"{k}: {v}" for k, v in headers.items())]
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        payload = chunked(body, sizes)
    else:
        lines.append("Connection: close")
        payload = body
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    seen = Collected()
    parser = seen.parser()
    for piece in split(raw, cuts):
        parser.feed(piece)
    if framing == "close":
        assert not seen.done
        parser.feed_eof()
    assert seen.done == 1 and parser.idle
    assert seen.body == body
    (head,) = seen.heads
    assert (head.status, head.reason) == (status, "Whatever Reason")
    for k, v in headers.items():
        assert head.headers[k] == v


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_is_refused_as_a_protocol_error_and_nothing_else(data: bytes) -> None:
    """Arbitrary bytes from an upstream either parse or raise HttpProtocolError: never another
    exception that would escape the client as a 500."""
    seen = Collected()
    parser = seen.parser()
    try:
        parser.feed(data)
        parser.feed_eof()
    except HttpProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(1, 5000))
def test_garbage_after_a_valid_head_is_refused_as_a_protocol_error(data: bytes, cut: int) -> None:
    """A chunked body whose framing is broken anywhere is a protocol error, not a crash."""
    seen = Collected()
    parser = seen.parser()
    try:
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + data[:cut])
        parser.feed(data[cut:])
        parser.feed_eof()
    except HttpProtocolError:
        pass


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "conflicting content-length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid content-length"),
        (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n", "malformed header line"),
        (b"HTTP/2 200\r\n\r\n", "not an HTTP/1.x status line"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than its declared size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", "data after its response"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
    ],
)
def test_ambiguous_or_hostile_framing_is_refused(raw: bytes, needle: str) -> None:
    """Framing that could be read two ways, or that no HTTP/1.1 server sends, is refused with a
    message naming what was wrong."""
    parser = Collected().parser()
    with pytest.raises(HttpProtocolError, match=needle):
        parser.feed(raw)


def test_a_head_past_its_limit_is_refused_before_it_is_complete() -> None:
    """An upstream that sends header bytes without end is cut off at MAX_HEAD_BYTES, not
    buffered forever."""
    parser = Collected().parser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(HttpProtocolError, match="head exceeds"):
        for _ in range(MAX_HEAD_BYTES // 1000 + 2):
            parser.feed(b"x-filler: " + b"a" * 990 + b"\r\n")


def test_a_chunk_line_without_end_is_refused() -> None:
    """A chunk-size line that never ends is refused once past its limit."""
    parser = Collected().parser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(HttpProtocolError, match="chunk-size line is too long"):
        parser.feed(b"1" * 2000)


def test_interim_responses_are_skipped_and_no_body_statuses_end_at_the_head() -> None:
    """100 Continue is passed over; 204 has no body even with no length."""
    seen = Collected()
    parser = seen.parser()
    parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
    assert [h.status for h in seen.heads] == [204]
    assert seen.done == 1 and seen.body == b""


def test_truncated_bodies_are_errors_at_eof() -> None:
    """A connection closed inside a length- or chunk-framed body is an error, never a short
    body taken as whole."""
    for raw in (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"):
        parser = Collected().parser()
        parser.feed(raw)
        with pytest.raises(HttpProtocolError, match="before the response was complete"):
            parser.feed_eof()


def test_repeated_headers_are_joined_and_names_lower_cased() -> None:
    """Header names are case-insensitive (lower-cased) and repeated fields keep all values."""
    head = parse_head(b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nX-Ratelimit: a\r\nx-ratelimit: b")
    assert head.headers == {"retry-after": "3", "x-ratelimit": "a, b"}
    assert head.status == 429 and head.reason == "Too Many"


def test_keep_alive_follows_version_and_connection_header() -> None:
    """HTTP/1.1 keeps the connection unless told ``close``; HTTP/1.0 only if told ``keep-alive``."""
    assert keeps_alive(parse_head(b"HTTP/1.1 200 OK"))
    assert not keeps_alive(parse_head(b"HTTP/1.1 200 OK\r\nConnection: Close"))
    assert not keeps_alive(parse_head(b"HTTP/1.0 200 OK"))
    assert keeps_alive(parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive"))


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_gzip_and_deflate_bodies_are_decoded(coding: str) -> None:
    """A compressed body is decoded piece by piece to the original bytes."""
    body = b'{"choices": []}' * 50
    packed = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    decode = decoder_for(parse_head(f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}".encode()))
    assert decode is not None
    assert b"".join(decode(packed[i : i + 7]) for i in range(0, len(packed), 7)) == body


def test_unknown_content_coding_is_refused() -> None:
    """A coding vmx cannot decode is a protocol error rather than compressed bytes passed on."""
    with pytest.raises(HttpProtocolError, match="unsupported content-encoding"):
        decoder_for(parse_head(b"HTTP/1.1 200 OK\r\nContent-Encoding: br"))


@pytest.mark.parametrize("bad", ["a\r\nx-injected: 1", "a\nb", "a\x00b"])
def test_header_values_that_would_split_the_request_are_refused(bad: str) -> None:
    """No configured or forwarded header value can start a second request on the connection."""
    with pytest.raises(HttpProtocolError, match="forbidden character"):
        encode_head("POST", "/v1/x", "h", {"x-meta": bad}, 0)
    with pytest.raises(HttpProtocolError, match="forbidden character"):
        encode_head("POST", "/v1/x", "h", {"bad name": "v"}, 0)


def test_request_head_carries_host_length_and_headers() -> None:
    """The head names the target as given, the host, the body length and each header once;
    values beyond Latin-1 go out as UTF-8."""
    raw = encode_head("POST", "/model/a%3Ab/converse", "example.com:8443", {"authorization": "Bearer k", "x-meta": "café"}, 12)
    assert raw.startswith(b"POST /model/a%3Ab/converse HTTP/1.1\r\nhost: example.com:8443\r\ncontent-length: 12\r\n")
    assert b"authorization: Bearer k\r\n" in raw and raw.endswith(b"\r\n\r\n")
    assert "x-meta: café".encode("latin-1") in raw
    assert "x-meta: 日本".encode() in encode_head("POST", "/", "h", {"x-meta": "日本"}, 0)


@pytest.mark.parametrize("target", ["/v1/a b", "/v1/a\r\nx: 1", "/v1/\x00"])
def test_a_target_that_would_split_the_request_line_is_refused(target: str) -> None:
    """A path holding a space or a control character (a model id from a client, say) cannot
    rewrite the request line."""
    with pytest.raises(HttpProtocolError, match="request target"):
        encode_head("POST", target, "h", {}, 0)
