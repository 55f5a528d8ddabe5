"""AWS event-stream decoding (``vmx_providers/_eventstream.py``): any chunking, both CRCs
checked, header types, truncation."""

from __future__ import annotations

import itertools
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmx_core.errors import UpstreamProtocolError
from vmx_providers._eventstream import EventStreamDecoder, encode_message

HEADERS = {":event-type": "chunk", ":message-type": "event", ":content-type": "application/json"}


@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5), st.lists(st.integers(0, 5000), max_size=20))
def test_any_chunking_decodes_the_same_messages(payloads: list[bytes], cuts: list[int]) -> None:
    """However the bytes are cut, the decoder returns every message whole and in order."""
    raw = b"".join(encode_message(HEADERS, p) for p in payloads)
    bounds = [0, *sorted(c % (len(raw) + 1) for c in cuts), len(raw)]
    decoder = EventStreamDecoder()
    got = [m for a, b in itertools.pairwise(bounds) for m in decoder.feed(raw[a:b])]
    assert [m.payload for m in got] == payloads
    assert all(m.event_type == "chunk" and m.message_type == "event" for m in got)
    assert decoder.pending == 0


@pytest.mark.parametrize("where", [2, 20, -10, -1])
def test_a_flipped_byte_fails_a_crc(where: int) -> None:
    """A corrupted prelude, header, payload or trailing CRC is a protocol error."""
    raw = bytearray(encode_message(HEADERS, b'{"bytes": "eyJ0eXBlIjoicGluZyJ9"}'))
    raw[where] ^= 0x01
    with pytest.raises(UpstreamProtocolError, match=r"CRC|length"):
        EventStreamDecoder().feed(bytes(raw))


def test_non_string_headers_are_read() -> None:
    """Boolean, integer and byte-array header values decode (Bedrock sends strings, others may not)."""
    headers = b"\x04flag\x00" + b"\x03num\x04" + struct.pack(">i", 7) + b"\x03raw\x06" + struct.pack(">H", 2) + b"ab"
    prelude = struct.pack(">II", 12 + len(headers) + 4, len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers
    message = EventStreamDecoder().feed(head + struct.pack(">I", zlib.crc32(head)))[0]
    assert message.headers == {"flag": True, "num": 7, "raw": b"ab"}


def test_truncated_stream_leaves_pending_bytes() -> None:
    """A message cut short is not returned and is visible as pending (the provider reports it)."""
    raw = encode_message(HEADERS, b"x" * 50)
    decoder = EventStreamDecoder()
    assert decoder.feed(raw[:-7]) == []
    assert decoder.pending == len(raw) - 7
