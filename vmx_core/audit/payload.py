"""Request and response bodies for ``request_audit_payload`` (``audit.payloads``).

Two halves, split by where they run:

- :class:`PayloadCapture` lives on the request context while the request runs, and only when
  payloads are on (``None`` otherwise, so the ``none`` mode costs one ``is None`` test per
  hook point).  It keeps *references* to what already exists -- the client's bytes, the
  upstream body dict, the upstream's answer bytes, each relayed SSE frame -- and copies
  nothing; a stream's frames are kept up to ``audit.max_stream_payload_bytes``.
- :func:`payload_json` runs in the audit writer, off the request path: it parses those bytes
  and redacts them (:mod:`vmx_core.audit.redact`) into the three JSON columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from attrs import define, field, frozen

from vmx_core.audit.redact import Redactor
from vmx_core.wire.sse import SSEParser

#: A body that is not JSON is stored as text, cut to this many characters.
_TEXT_LIMIT = 65_536


@frozen
class Payload:
    """What one request sent and received, as captured (unparsed, unredacted).

    ``secrets`` are the credentials this request could have carried (the caller's key, the
    tenant's connection credentials): the writer cuts them out of every string."""

    client: bytes | Mapping[str, Any] | None = field(repr=False)
    upstream: Mapping[str, Any] | None = field(repr=False)
    #: A whole answer: the upstream's bytes, or the error body the client was sent.
    response: bytes | None = field(repr=False)
    #: A stream's SSE frames as relayed to the client (``None`` for a whole answer).
    frames: tuple[bytes, ...] | None = field(repr=False)
    truncated: bool = False
    secrets: tuple[str, ...] = field(default=(), repr=False)


@define
class PayloadCapture:
    """Per-request references to the bodies; see the module docstring."""

    max_stream_bytes: int
    upstream: Mapping[str, Any] | None = None
    response: bytes | None = None
    frames: list[bytes] | None = None
    size: int = 0
    truncated: bool = False

    def frame(self, raw: bytes) -> None:
        """One SSE frame relayed to the client; past the bound the rest are dropped."""
        if self.frames is None:
            self.frames = []
        if self.truncated:
            return
        if self.size + len(raw) > self.max_stream_bytes:
            self.truncated = True
            return
        self.frames.append(raw)
        self.size += len(raw)

    def freeze(self, client: bytes | Mapping[str, Any] | None, error_body: bytes | None,
               secrets: Sequence[str]) -> Payload:
        frames = tuple(self.frames) if self.frames is not None else None
        response = self.response if self.response is not None or frames is not None else error_body
        return Payload(client, self.upstream, response, frames, self.truncated, tuple(secrets))


def payload_json(payload: Payload, redactor: Redactor) -> dict[str, Any]:
    """The three ``request_audit_payload`` values, parsed and redacted."""
    secrets = payload.secrets
    if payload.frames is not None:
        response: Any = {"events": _events(payload.frames, redactor, secrets), "truncated": payload.truncated}
    else:
        response = _body(payload.response, redactor, secrets)
    return {
        "client_body": _body(payload.client, redactor, secrets),
        "upstream_body": _body(payload.upstream, redactor, secrets),
        "response_body": response,
    }


def _body(raw: bytes | Mapping[str, Any] | None, redactor: Redactor, secrets: Sequence[str]) -> Any:
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        return redactor.redact(raw, secrets)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = bytes(raw).decode("utf-8", "replace")[:_TEXT_LIMIT]
    return redactor.redact(value, secrets)


def _events(frames: Sequence[bytes], redactor: Redactor, secrets: Sequence[str]) -> list[dict[str, Any]]:
    parser = SSEParser()
    out = []
    for frame in frames:
        for ev in parser.feed(frame):
            try:
                data: Any = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                data = ev.data  # "[DONE]"
            entry: dict[str, Any] = {"data": redactor.redact(data, secrets)}
            if ev.event is not None:
                entry = {"event": ev.event, **entry}
            out.append(entry)
    return out
