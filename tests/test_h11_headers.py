"""``vmx_server.h11_headers``: h11's ``set_comma_header`` without re-validating the headers it
keeps gives exactly what h11's own gives -- the same items, the same errors."""

from __future__ import annotations

from collections.abc import Iterator

import h11
import pytest
from h11 import _connection, _headers
from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_server import h11_headers

NAMES = st.sampled_from([b"content-length", b"Content-Length", b"transfer-encoding", b"Transfer-Encoding",
                         b"connection", b"Connection", b"x-vmx-model", b"X-Ratelimit-Limit-Tokens", b"date", b"x"])
VALUES = st.one_of(
    st.sampled_from([b"12", b"12, 12", b"1,2", b"chunked", b"Chunked", b"gzip", b"close", b"keep-alive", b"", b" 7 ",
                     b"bad\x00", b"a\r\nb"]),
    st.text(alphabet=" !#,;09azAZ\t~", max_size=10).map(str.encode),
)
SET_NAMES = st.sampled_from([b"content-length", b"transfer-encoding", b"connection"])


@pytest.fixture(autouse=True)
def _h11_as_it_was() -> Iterator[None]:
    before = _connection.set_comma_header
    yield
    _connection.set_comma_header = before


def _outcome(fn: object, headers: _headers.Headers, name: bytes, values: list[bytes]) -> object:
    try:
        result = fn(headers, name, values)  # type: ignore[operator]
    except h11.LocalProtocolError as exc:
        return ("error", str(exc), exc.error_status_hint)
    return ("headers", result._full_items)


@settings(max_examples=400)  # about a third of the lists drawn are valid headers
@given(st.lists(st.tuples(NAMES, VALUES), max_size=8), SET_NAMES, st.lists(VALUES, max_size=3))
def test_the_same_headers_and_errors_as_h11s_own(pairs: list[tuple[bytes, bytes]], name: bytes, values: list[bytes]) -> None:
    """For any valid header list, any of the names h11 sets and any new values (valid or not),
    both functions return the same items in the same order, or raise the same error."""
    try:
        headers = _headers.normalize_and_validate(pairs)
    except h11.LocalProtocolError:
        return  # h11 never holds such a list
    assert _outcome(h11_headers.set_comma_header, headers, name, values) == _outcome(h11_headers._original, headers, name, values)


def test_a_stream_response_is_framed_as_before() -> None:
    """Through h11's connection: a response without a length leaves chunked with every header
    kept, the same bytes with the patch as without."""

    def response_bytes() -> bytes:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        assert isinstance(conn.next_event(), h11.Request)
        conn.next_event()  # EndOfMessage
        head = [(b"x-vmx-model", b"m"), (b"content-type", b"text/event-stream")]
        data = conn.send(h11.Response(status_code=200, headers=head))
        assert data is not None
        return data

    h11_headers.uninstall()
    theirs = response_bytes()
    assert h11_headers.install()
    ours = response_bytes()
    assert ours == theirs
    assert b"Transfer-Encoding: chunked\r\n" in ours


def test_installed_only_for_a_checked_h11(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another h11 release keeps its own function; a checked one gets the patched one once."""
    h11_headers.uninstall()
    monkeypatch.setattr(h11, "__version__", "9.9.9")
    assert not h11_headers.install()
    assert _connection.set_comma_header is h11_headers._original
    monkeypatch.setattr(h11, "__version__", sorted(h11_headers.CHECKED_VERSIONS)[0])
    assert h11_headers.install() and h11_headers.install()
    assert _connection.set_comma_header is h11_headers.set_comma_header
