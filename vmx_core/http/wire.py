"""HTTP/1.1 on the wire: the request head we write and an incremental parser for the response.

The parser is push-based (``feed`` whatever the socket delivered, get callbacks) so that the
common case -- a whole answer in one read -- costs one pass, and a streamed answer is handed on
as its chunks arrive.  It accepts what RFC 9112 allows a server to send and refuses, as
:class:`HttpProtocolError`, what would make the framing ambiguous (two different lengths,
a bad chunk size, folded headers) or what no provider sends but an attacker might (heads or
chunk lines past their limits).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping

#: Limits on what an upstream may send before its body: far above any provider's head.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 128
#: A chunk-size line (hex size plus extensions) and the trailer section.
MAX_CHUNK_LINE = 1024
MAX_TRAILER_BYTES = 16 * 1024

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: ([^\r\n]*))?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
#: A whole chunk-size line in its usual form; anything else takes the careful path.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[^\r\n]{0,1000})?\r\n")
#: What a header value must not hold: the request-splitting characters.
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")


class HttpProtocolError(Exception):
    """The upstream's answer is not HTTP/1.1 we can frame, or a request head cannot be
    written safely."""


def request_line(method: str, target: str, host: str, length: int) -> bytes:
    """The request line, ``host`` and ``content-length`` of a request with a ``length``-byte
    body.  The target is sent as given (already URL-encoded), so it must be one token."""
    if not target.isprintable() or " " in target:
        raise HttpProtocolError(f"request target {target[:80]!r} cannot be sent: it holds a space or control character")
    return f"{method} {target} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {length}\r\n".encode("latin-1", "strict")


def header_block(headers: Mapping[str, str]) -> bytes:
    """Header lines, each checked for the characters that would split the request (a value
    from config or a client must never be able to start a second request on a shared
    connection)."""
    lines = []
    for name, value in headers.items():
        if _UNSAFE_VALUE.search(value) or not _TOKEN.fullmatch(name.encode("latin-1", "replace")):
            raise HttpProtocolError(f"header {name!r} cannot be sent: its name or value holds a forbidden character")
        lines.append(f"{name}: {value}\r\n")
    text = "".join(lines)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        # Values outside Latin-1 (a UTF-8 metadata string): sent as their UTF-8 bytes.
        return text.encode("utf-8")


def encode_head(method: str, target: str, host: str, headers: Mapping[str, str], length: int) -> bytes:
    """A whole request head: line, headers and the blank line."""
    return request_line(method, target, host, length) + header_block(headers) + b"\r\n"


class Head:
    """A response's status line and headers (names lower-case; a repeated header's values
    joined with ``", "``, as RFC 9110 allows for every header a provider sends)."""

    __slots__ = ("headers", "reason", "status", "version")

    def __init__(self, status: int, reason: str, headers: dict[str, str], version: int) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.version = version


def parse_head(raw: bytes) -> Head:
    """The head of one response (``raw`` up to, not including, the blank line)."""
    lines = raw.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpProtocolError(f"the response has more than {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            # Also refuses obs-fold (a line starting with whitespace): RFC 9112 §5.2 lets a
            # client reject it, and a folded line would otherwise hide a header.
            raise HttpProtocolError(f"malformed header line: {line[:80]!r}")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    reason = (match.group(3) or b"").decode("latin-1")
    return Head(int(match.group(2)), reason, headers, int(match.group(1)))


# Body framing, chosen from the head.
UNTIL_CLOSE, BY_LENGTH, CHUNKED, EMPTY = range(4)


def framing(head: Head, method: str) -> tuple[int, int]:
    """(framing, length) of the body that follows ``head`` (RFC 9112 §6.3)."""
    if method == "HEAD" or head.status in (204, 304) or head.status < 200:
        return EMPTY, 0
    headers = head.headers
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.rsplit(",", 1)[-1].strip().lower() == "chunked":
            return CHUNKED, 0
        return UNTIL_CLOSE, 0
    declared = headers.get("content-length")
    if declared is None:
        return UNTIL_CLOSE, 0
    # Repeated (joined) lengths are fine only when they agree.
    values = {v.strip() for v in declared.split(",")}
    if len(values) != 1:
        raise HttpProtocolError(f"conflicting content-length values: {declared!r}")
    value = values.pop()
    if not value.isdigit() or not value.isascii():
        raise HttpProtocolError(f"invalid content-length: {declared!r}")
    length = int(value)
    return (BY_LENGTH, length) if length else (EMPTY, 0)


def keeps_alive(head: Head) -> bool:
    """Whether the connection may carry another request after this response."""
    tokens = head.headers.get("connection", "").lower()
    if head.version == 0:
        return "keep-alive" in tokens
    return "close" not in tokens


def decoder_for(head: Head) -> Callable[[bytes], bytes] | None:
    """A decompressor for the body's content coding, None for identity."""
    coding = head.headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip", "deflate"):
        # 32 + 15: zlib detects the gzip or zlib wrapper itself.
        return zlib.decompressobj(47).decompress
    raise HttpProtocolError(f"unsupported content-encoding {coding!r} (only gzip and deflate are)")


class ResponseParser:
    """Parses the responses of one connection, in order.

    ``on_head(head)`` is called once the head is complete, ``on_body(data)`` for each piece of
    the body (de-chunked, not decompressed), ``on_done()`` at its end.  Bytes after the end of
    a response are kept for the next one (``expect`` sets its request method)."""

    __slots__ = ("_buf", "_left", "_method", "_state", "on_body", "on_done", "on_head")

    _HEAD, _LENGTH, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _CLOSE, _IDLE = range(8)

    def __init__(
        self,
        on_head: Callable[[Head, int], None],
        on_body: Callable[[bytes], None],
        on_done: Callable[[], None],
    ) -> None:
        self.on_head = on_head
        self.on_body = on_body
        self.on_done = on_done
        self._buf = b""
        self._state = self._IDLE
        self._left = 0
        self._method = "POST"

    @property
    def idle(self) -> bool:
        return self._state == self._IDLE

    @property
    def until_close(self) -> bool:
        return self._state == self._CLOSE

    def expect(self, method: str) -> None:
        """A request was written: what arrives next is its response."""
        self._method = method
        self._state = self._HEAD

    def feed(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        while data:
            state = self._state
            if state == self._LENGTH:
                if len(data) < self._left:
                    self._left -= len(data)
                    self.on_body(data)
                    return
                piece, data = data[: self._left], data[self._left :]
                self._left = 0
                self.on_body(piece)
                self._finish()
            elif state == self._HEAD:
                data = self._feed_head(data)
            elif state == self._CHUNK_DATA or state == self._CHUNK_CRLF or state == self._CHUNK_LINE:
                data = self._feed_chunks(data)
            elif state == self._TRAILER:
                data = self._feed_trailer(data)
            elif state == self._CLOSE:
                self.on_body(data)
                return
            else:
                # Bytes nobody asked for: a server that sends them cannot be trusted with the
                # next request on this connection.
                raise HttpProtocolError("the upstream sent data after its response")

    def feed_eof(self) -> None:
        """The connection closed: the end of an until-close body, an error anywhere else."""
        if self._state == self._CLOSE:
            self._finish()
        elif self._state != self._IDLE:
            raise HttpProtocolError("the upstream closed the connection before the response was complete")

    def _finish(self) -> None:
        self._state = self._IDLE
        self.on_done()

    def _feed_head(self, data: bytes) -> bytes:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEAD_BYTES:
                raise HttpProtocolError(f"the response head exceeds {MAX_HEAD_BYTES} bytes")
            self._buf = data
            return b""
        if end > MAX_HEAD_BYTES:
            raise HttpProtocolError(f"the response head exceeds {MAX_HEAD_BYTES} bytes")
        head = parse_head(data[:end])
        rest = data[end + 4 :]
        if head.status < 200:
            if head.status == 101:
                raise HttpProtocolError("the upstream switched protocols, which was not asked for")
            return rest  # 100 Continue and other interim answers: the real one follows
        kind, length = framing(head, self._method)
        self.on_head(head, kind)
        if kind == BY_LENGTH:
            self._state, self._left = self._LENGTH, length
        elif kind == CHUNKED:
            self._state = self._CHUNK_LINE
        elif kind == UNTIL_CLOSE:
            self._state = self._CLOSE
        else:
            self._finish()
        return rest

    def _feed_chunks(self, data: bytes) -> bytes:
        """Chunked-body bytes up to the last-chunk (or the end of ``data``): the pieces of one
        read go to ``on_body`` as one -- an SSE stream sends an HTTP chunk per event, and the
        relay wants the read, not the chunks."""
        # Offsets rather than slices of the rest: a read of many small chunks stays linear.
        pieces: list[bytes] = []
        state, left, pos, end_of_data = self._state, self._left, 0, len(data)
        line_state, data_state, crlf_state = self._CHUNK_LINE, self._CHUNK_DATA, self._CHUNK_CRLF
        try:
            while pos < end_of_data:
                if state == line_state:
                    line = _CHUNK_LINE.match(data, pos)
                    if line is not None:  # the usual form, "1a2\r\n" (extensions allowed)
                        left = int(line.group(1), 16)
                        pos = line.end()
                    else:
                        eol = data.find(b"\r\n", pos, pos + MAX_CHUNK_LINE + 2)
                        if eol < 0:
                            if end_of_data - pos > MAX_CHUNK_LINE:
                                raise HttpProtocolError("a chunk-size line is too long")
                            break
                        semi = data.find(b";", pos, eol)
                        size = data[pos : eol if semi < 0 else semi].strip(b" \t")
                        if not _CHUNK_SIZE.fullmatch(size):
                            raise HttpProtocolError(f"invalid chunk size {size[:20]!r}")
                        left = int(size, 16)
                        pos = eol + 2
                    if not left:
                        state = self._TRAILER
                        break
                    stop = pos + left
                    if data.startswith(b"\r\n", stop):
                        # The whole chunk and its CRLF are in this read (an SSE stream's usual
                        # chunk, one event): one step instead of three states.
                        pieces.append(data[pos:stop])
                        pos, left = stop + 2, 0
                    else:
                        state = data_state
                elif state == data_state:
                    stop = pos + left
                    if stop > end_of_data:
                        pieces.append(data[pos:])
                        left -= end_of_data - pos
                        pos = end_of_data
                        break
                    pieces.append(data[pos:stop])
                    pos, left, state = stop, 0, crlf_state
                else:  # the CRLF after a chunk's data
                    if end_of_data - pos < 2:
                        break
                    if not data.startswith(b"\r\n", pos):
                        raise HttpProtocolError("a chunk is longer than its declared size")
                    pos += 2
                    state = line_state
        finally:
            self._state, self._left = state, left
        if pieces:
            self.on_body(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        rest = data[pos:] if pos else data
        if state != self._TRAILER and rest:
            self._buf = rest  # an incomplete size line or CRLF: completed by the next read
            return b""
        return rest

    def _feed_trailer(self, data: bytes) -> bytes:
        # The trailer section ends with an empty line; none of its fields are used.
        if data.startswith(b"\r\n"):
            self._finish()
            return data[2:]
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_TRAILER_BYTES:
                raise HttpProtocolError("the chunked trailer section is too long")
            self._buf = data
            return b""
        self._finish()
        return data[end + 4 :]
