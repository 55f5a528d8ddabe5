"""``http.response.start`` as the completion endpoints build it: header names lower-cased to
bytes (remembered per name, within a bound), the answer's own headers winning over defaults."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vmx_server import streaming
from vmx_server.streaming import response_start

TOKEN = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"), min_size=1, max_size=30)


@given(st.dictionaries(TOKEN, st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40), max_size=12))
def test_headers_are_the_given_ones_lower_cased_in_order(headers: dict[str, str]) -> None:
    """Each header leaves as (lower-case name, latin-1 value), in the given order, however
    often its name was seen before."""
    for _ in range(2):  # the second time every name comes from the cache
        start = response_start(200, headers, "application/json", 7)
        given_part = start["headers"][: len(headers)]
        assert given_part == [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def test_defaults_are_added_only_when_missing() -> None:
    """content-length and content-type are added unless the answer carries them (any case)."""
    start = response_start(200, {"X-Vmx-Model": "m"}, "application/json", 12)
    assert start["headers"] == [(b"x-vmx-model", b"m"), (b"content-length", b"12"), (b"content-type", b"application/json")]
    own = response_start(200, {"Content-Type": "text/plain"}, "application/json", None)
    assert own["headers"] == [(b"content-type", b"text/plain")]


def test_the_name_cache_stays_bounded() -> None:
    """Clients choose metadata keys (``x-vmx-metadata-*``): however many distinct names pass,
    the remembered ones never exceed the bound."""
    for i in range(streaming._MOST_NAMES * 2 + 10):
        start = response_start(200, {f"x-vmx-metadata-k{i}": "v"}, "application/json", 0)
        assert start["headers"][0] == (f"x-vmx-metadata-k{i}".encode(), b"v")
        assert len(streaming._NAMES) <= streaming._MOST_NAMES
