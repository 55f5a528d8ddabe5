"""AWS's binary ``application/vnd.amazon.eventstream`` framing, as Bedrock streams use it.

A message is a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes), the
headers, the payload, and a CRC32 of everything before it.  Both CRCs are checked: a
corrupted or truncated frame is an ``UpstreamProtocolError``, never a silently wrong answer.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from attrs import frozen

from vmx_core.errors import UpstreamProtocolError

_PRELUDE = struct.Struct(">III")
#: A frame larger than this is not an LLM event: refuse it rather than buffer it.
MAX_MESSAGE = 16 * 1024 * 1024
#: Fixed-size header value types (type id -> byte length); 6 and 7 are length-prefixed.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


@frozen
class EventMessage:
    headers: dict[str, Any]
    payload: bytes

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", "event"))

    @property
    def event_type(self) -> str:
        return str(self.headers.get(":event-type", self.headers.get(":exception-type", "")))


class EventStreamDecoder:
    """Feed bytes in any chunking, get whole messages out."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[EventMessage]:
        self._buf += chunk
        out: list[EventMessage] = []
        while len(self._buf) >= _PRELUDE.size:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(self._buf)
            if zlib.crc32(bytes(self._buf[:8])) != prelude_crc:
                raise UpstreamProtocolError("event stream prelude CRC mismatch")
            if total > MAX_MESSAGE or total < 16 + headers_len:
                raise UpstreamProtocolError(f"event stream message of impossible length {total}")
            if len(self._buf) < total:
                break
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            (message_crc,) = struct.unpack_from(">I", frame, total - 4)
            if zlib.crc32(frame[:-4]) != message_crc:
                raise UpstreamProtocolError("event stream message CRC mismatch")
            headers = _headers(frame[12 : 12 + headers_len])
            out.append(EventMessage(headers, frame[12 + headers_len : total - 4]))
        return out

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message (a truncated stream when the body ends)."""
        return len(self._buf)


def _headers(raw: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    i = 0
    try:
        while i < len(raw):
            name_len = raw[i]
            name = raw[i + 1 : i + 1 + name_len].decode()
            i += 1 + name_len
            kind = raw[i]
            i += 1
            if kind in (6, 7):
                (size,) = struct.unpack_from(">H", raw, i)
                value = raw[i + 2 : i + 2 + size]
                headers[name] = value.decode() if kind == 7 else value
                i += 2 + size
            elif kind in (0, 1):
                headers[name] = kind == 0
            elif kind in _FIXED:
                value = raw[i : i + _FIXED[kind]]
                # Integers and timestamps (epoch ms) are signed big-endian; a UUID stays bytes.
                headers[name] = value if kind == 9 else int.from_bytes(value, "big", signed=True)
                i += _FIXED[kind]
            else:
                raise UpstreamProtocolError(f"event stream header {name!r} has unknown type {kind}")
    except (IndexError, struct.error, UnicodeDecodeError):
        raise UpstreamProtocolError("event stream headers are malformed") from None
    return headers


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers: what the fake Bedrock in the tests sends."""
    raw_headers = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode() for k, v in headers.items()
    )
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return head + struct.pack(">I", zlib.crc32(head))
