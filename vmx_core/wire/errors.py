"""Error bodies in the client's dialect (DESIGN §6), whole and in-band in a stream."""

from __future__ import annotations

from typing import Any

import orjson

from vmx_core.errors import RequestError
from vmx_core.wire import sse
from vmx_core.wire.formats import Format


def openai_body(err: RequestError) -> dict[str, Any]:
    return {
        "error": {
            "message": err.message,
            "type": err.openai_type,
            "code": err.openai_code,
            "param": err.param,
        }
    }


def anthropic_body(err: RequestError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": err.anthropic_type, "message": err.message}}


def body_for(err: RequestError, fmt: Format | str) -> bytes:
    """The whole JSON error body for a response with status ``err.status``."""
    dialect = fmt.dialect if isinstance(fmt, Format) else fmt
    return orjson.dumps(anthropic_body(err) if dialect == "anthropic" else openai_body(err))


def stream_error_frame(err: RequestError, fmt: Format, sequence_number: int = 0) -> bytes:
    """The in-band error that ends a stream which already sent its first byte.

    Chat Completions: ``data: {"error": ...}`` and *no* ``[DONE]``; Responses: an ``error``
    event; Anthropic: an ``error`` event.  Every official SDK raises on these.
    """
    if fmt is Format.CHAT_COMPLETIONS:
        return sse.encode(orjson.dumps(openai_body(err)))
    if fmt is Format.RESPONSES:
        payload = {
            "type": "error",
            "code": err.openai_code,
            "message": err.message,
            "param": err.param,
            "sequence_number": sequence_number,
        }
        return sse.encode(orjson.dumps(payload), event="error")
    return sse.encode(orjson.dumps(anthropic_body(err)), event="error")
