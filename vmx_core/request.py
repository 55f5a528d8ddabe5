"""A client's request as the pipeline sees it, and the ``vmx`` envelope (DESIGN §4)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson
from attrs import define, field, frozen

from vmx_core.errors import InvalidRequest, RequestTooLarge
from vmx_core.wire.formats import Format

_ENVELOPE_FIELDS = frozenset(
    {"correlationId", "metadata", "timeoutMs", "providerArgs", "secondaryModelIndex", "resourceConfigOverrides"}
)
_UNSAFE = re.compile(r"[\r\n\x00]")
#: What a response header value may not carry: every control character except HTAB.
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HEADER_META = "x-vmx-metadata-"
_META_KEY_UNSAFE = re.compile(r"[^a-z0-9_-]")


@frozen
class ClientRequest:
    """One call from a client.  ``headers`` keys are lower-case."""

    format: Format
    workspace: str
    environment: str
    body: bytes | Mapping[str, Any]
    api_key: str | None = None
    headers: Mapping[str, str] = field(factory=dict)
    source_ip: str | None = None
    received_at: float = field(factory=time.perf_counter)


# ``@define`` rather than ``@frozen``: one is made per request, and a frozen class's ``__init__`` sets each
# field through ``object.__setattr__``, several times the cost of a plain slot store (issue 9).
# Never mutated.
@define
class Envelope:
    correlation_id: str | None = None
    metadata: Mapping[str, str] = field(factory=dict)
    timeout_ms: float | None = None
    provider_args: Mapping[str, Any] = field(factory=dict)
    secondary_model_index: int | None = None
    resource_overrides: Mapping[str, Any] | None = None


def parse_body(body: bytes | Mapping[str, Any], max_bytes: int) -> dict[str, Any]:
    """The JSON object the client sent; 413 when too large, 400 when not a JSON object."""
    if isinstance(body, bytes | bytearray | memoryview):
        if len(body) > max_bytes:
            raise RequestTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes}")
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"request body is not valid JSON: {exc.args[0] if exc.args else exc}") from None
    else:
        parsed = dict(body)
    if not isinstance(parsed, dict):
        raise InvalidRequest("request body must be a JSON object")
    return parsed


def check_common_fields(body: Mapping[str, Any], fmt: Format) -> None:
    """Type checks the gateway itself relies on; the upstream validates the rest."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: a resource name (string) is required", param="model")
    if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream: must be a boolean", param="stream")
    if fmt is Format.CHAT_COMPLETIONS and not isinstance(body.get("messages"), list):
        raise InvalidRequest("messages: must be an array of messages", param="messages")
    if fmt is Format.ANTHROPIC and not isinstance(body.get("messages"), list):
        raise InvalidRequest("messages: must be an array of messages", param="messages")
    if fmt is Format.RESPONSES and "input" in body and not isinstance(body["input"], str | list):
        raise InvalidRequest("input: must be a string or an array of items", param="input")
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise InvalidRequest(f"{name}: must be a non-negative integer", param=name)


def parse_envelope(raw: Any, headers: Mapping[str, str]) -> Envelope:
    """Validate ``vmx`` and merge the header fallbacks (the body wins on conflicts)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidRequest("vmx: must be an object", param="vmx")
    if not _ENVELOPE_FIELDS.issuperset(raw):
        unknown = sorted(set(raw) - _ENVELOPE_FIELDS)
        raise InvalidRequest(f"vmx.{unknown[0]}: unknown field", param=f"vmx.{unknown[0]}")

    correlation = raw.get("correlationId")
    if correlation is None:
        correlation = headers.get("x-vmx-correlation-id")
    if correlation is not None and not isinstance(correlation, str):
        raise InvalidRequest("vmx.correlationId: must be a string", param="vmx.correlationId")
    if correlation is not None:
        # A printable string holds no CR, LF or NUL: the usual case skips the substitution.
        correlation = (correlation if correlation.isprintable() else _UNSAFE.sub("", correlation))[:256]

    metadata: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith(_HEADER_META) and len(name) > len(_HEADER_META):
            metadata[name[len(_HEADER_META) :]] = _UNSAFE.sub("", value)
    body_meta = raw.get("metadata")
    if body_meta is not None:
        if not isinstance(body_meta, dict):
            raise InvalidRequest("vmx.metadata: must be an object of strings", param="vmx.metadata")
        for key, value in body_meta.items():
            if not isinstance(value, str):
                raise InvalidRequest(f"vmx.metadata.{key}: must be a string", param=f"vmx.metadata.{key}")
            metadata[key] = value

    timeout = raw.get("timeoutMs")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0
    ):
        raise InvalidRequest("vmx.timeoutMs: must be a positive number", param="vmx.timeoutMs")

    provider_args = raw.get("providerArgs")
    if provider_args is None:  # null means absent, as for every other envelope field
        provider_args = {}
    if not isinstance(provider_args, dict):
        raise InvalidRequest("vmx.providerArgs: must be an object", param="vmx.providerArgs")

    index = raw.get("secondaryModelIndex")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise InvalidRequest("vmx.secondaryModelIndex: must be a non-negative integer", param="vmx.secondaryModelIndex")

    overrides = raw.get("resourceConfigOverrides")
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidRequest("vmx.resourceConfigOverrides: must be an object", param="vmx.resourceConfigOverrides")

    return Envelope(
        correlation_id=correlation,
        metadata=metadata,
        timeout_ms=float(timeout) if timeout is not None else None,
        provider_args=provider_args,
        secondary_model_index=index,
        resource_overrides=overrides,
    )


def header_value(value: str) -> str:
    """``value`` made safe to echo in a response header: control characters (CR/LF/NUL among
    them) stripped, and text beyond Latin-1, which a header cannot carry as such, sent as its
    UTF-8 bytes (what clients that decode headers as UTF-8 read back unchanged)."""
    if value.isascii() and value.isprintable():  # the usual case, in two C-level scans
        return value
    value = _HEADER_UNSAFE.sub("", value)
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("latin-1")
    return value


def metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """``x-vmx-metadata-KEY`` echoes: keys lower-cased and reduced to header-safe characters."""
    out = {}
    for key, value in metadata.items():
        safe_key = _META_KEY_UNSAFE.sub("-", key.lower())
        if safe_key:
            out[_HEADER_META + safe_key] = header_value(value)
    return out
