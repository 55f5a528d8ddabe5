"""Server-sent events: an incremental parser for upstream streams and an encoder.

The parser keeps each event's raw bytes so a passthrough relay sends exactly what the upstream
sent, without re-encoding.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator

import orjson
from attrs import define


# ``@define`` rather than ``@frozen``: one is made per event of every stream, and a frozen
# class's ``__init__`` sets each field through ``object.__setattr__``, several times the cost
# of a plain slot store (issue 9).  Never mutated.
@define
class SSEEvent:
    event: str | None
    data: str
    raw: bytes

    @property
    def is_done(self) -> bool:
        return self.data == "[DONE]"


def encode(data: bytes | str, event: str | None = None) -> bytes:
    """One SSE frame.  ``data`` must be a single line (JSON from orjson always is)."""
    body = data.encode() if isinstance(data, str) else data
    if event:
        return b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"
    return b"data: " + body + b"\n\n"


class SSEParser:
    """Feed bytes in any chunking, get whole events out (per the WHATWG algorithm, minus
    ``id``/``retry``, which no LLM API uses)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        events: list[SSEEvent] = []
        start = 0
        # Scan forward from a position and slice the remainder once: one upstream read often
        # carries a whole stream's worth of frames, and re-slicing after each was quadratic.
        if b"\r" not in buf:
            # LF-only, which is what every LLM API sends: a byte search beats the regex.
            while (end := buf.find(b"\n\n", start)) >= 0:
                if buf.startswith(b"data: ", start) and buf.find(b"\n", start, end) < 0:
                    # The common frame, one ``data:`` line: no block parse, no second slice.
                    events.append(SSEEvent(None, buf[start + 6 : end].decode("utf-8", "replace"), buf[start : end + 2]))
                else:
                    ev = _parse_block(buf[start : end + 2])
                    if ev is not None:
                        events.append(ev)
                start = end + 2
        else:
            while (m := _BOUNDARY.search(buf, start)) is not None:
                ev = _parse_block(buf[start : m.end()])
                if ev is not None:
                    events.append(ev)
                start = m.end()
        self._buf = buf[start:] if start else buf
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event that has not been terminated yet (a truncated stream)."""
        return self._buf


# The end of an event: a line terminator (CRLF, LF or CR) followed by an empty line, with
# the two terminators free to differ (``data: x\n\r\n``).  A CR at the very end of the
# buffer after CRLF or LF may still be the start of a CRLF, so it waits for the next byte.
_BOUNDARY = re.compile(rb"(?:\r\n|\n)(?:\r\n|\n|\r(?=[^\n]))|\r\r\n?")


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and block.find(b"\n") == len(block) - 2 and b"\r" not in block:
        # The common frame, one ``data:`` line ending in LF LF.
        return SSEEvent(event=None, data=block[6:-2].decode("utf-8", errors="replace"), raw=block)
    event: str | None = None
    data: list[str] = []
    for raw_line in block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if not raw_line or raw_line.startswith(b":"):
            continue
        name, _, value = raw_line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value.decode("utf-8", errors="replace"))
        elif name == b"event":
            event = value.decode("utf-8", errors="replace")
    if not data and event is None:
        return None
    return SSEEvent(event=event, data="\n".join(data), raw=block)


async def parse_stream(chunks: AsyncIterable[bytes]) -> AsyncIterator[SSEEvent]:
    parser = SSEParser()
    async for chunk in chunks:
        for ev in parser.feed(chunk):
            yield ev


def json_event(payload: object, event: str | None = None) -> SSEEvent:
    """An event the gateway itself produces (a converted stream), with its raw frame."""
    data = orjson.dumps(payload)
    return SSEEvent(event=event, data=data.decode(), raw=encode(data, event))
