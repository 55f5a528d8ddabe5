"""Converting between API shapes through the canonical form: one parser and one emitter per
dialect for requests, whole responses and stream events (N + M, DESIGN Part II)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import orjson

from vmx_core.errors import InvalidRequest
from vmx_core.wire import anthropic, chat, converse, responses
from vmx_core.wire import canonical as c
from vmx_core.wire.anthropic_stream import AnthropicStreamEmitter, AnthropicStreamParser
from vmx_core.wire.chat_stream import ChatStreamEmitter, ChatStreamParser
from vmx_core.wire.converse import ConverseStreamParser
from vmx_core.wire.formats import Format
from vmx_core.wire.responses_stream import ResponsesStreamEmitter, ResponsesStreamParser
from vmx_core.wire.sse import SSEEvent

#: Which of a provider's shapes to convert to when it does not speak the client's: Chat
#: Completions first (the shape every OpenAI-compatible upstream speaks best).
PREFERENCE = (Format.CHAT_COMPLETIONS, Format.ANTHROPIC, Format.RESPONSES)

# Keyed by shape name: a Format (a StrEnum) for the client shapes, a plain name for the
# provider-only dialects (``bedrock-converse``), which need no client-side half.
PARSE_REQUEST: dict[str, Callable[[Mapping[str, Any]], c.Request]] = {
    Format.CHAT_COMPLETIONS: chat.parse_request,
    Format.RESPONSES: responses.parse_request,
    Format.ANTHROPIC: anthropic.parse_request,
}
EMIT_REQUEST: dict[str, Callable[[c.Request], dict[str, Any]]] = {
    Format.CHAT_COMPLETIONS: chat.emit_request,
    Format.RESPONSES: responses.emit_request,
    Format.ANTHROPIC: anthropic.emit_request,
    converse.NAME: converse.emit_request,
}
PARSE_RESPONSE: dict[str, Callable[[Mapping[str, Any]], c.Response]] = {
    Format.CHAT_COMPLETIONS: chat.parse_response,
    Format.RESPONSES: responses.parse_response,
    Format.ANTHROPIC: anthropic.parse_response,
    converse.NAME: converse.parse_response,
}
EMIT_RESPONSE: dict[str, Callable[[c.Response], dict[str, Any]]] = {
    Format.CHAT_COMPLETIONS: chat.emit_response,
    Format.RESPONSES: responses.emit_response,
    Format.ANTHROPIC: anthropic.emit_response,
}


class StreamParser(Protocol):
    def feed(self, ev: SSEEvent) -> list[c.Event]: ...


class StreamEmitter(Protocol):
    def emit(self, ev: c.Event) -> list[SSEEvent]: ...


PARSERS: dict[str, Callable[[], StreamParser]] = {
    Format.CHAT_COMPLETIONS: ChatStreamParser,
    Format.RESPONSES: ResponsesStreamParser,
    Format.ANTHROPIC: AnthropicStreamParser,
    converse.NAME: ConverseStreamParser,
}
EMITTERS: dict[str, Callable[[int | None], StreamEmitter]] = {
    Format.CHAT_COMPLETIONS: ChatStreamEmitter,
    Format.RESPONSES: ResponsesStreamEmitter,
    Format.ANTHROPIC: AnthropicStreamEmitter,
}


def target_format(client: Format, provider_formats: Iterable[Format]) -> Format | None:
    """The shape to send a provider: the client's own when the provider speaks it (verbatim
    passthrough), else the preferred one it speaks; ``None`` when it speaks none of ours."""
    formats = frozenset(provider_formats)
    if client in formats:
        return client
    return next((f for f in PREFERENCE if f in formats), None)


def provider_dialect(provider: object) -> str | None:
    """A provider's own dialect (``dialect`` attribute), when it speaks none of the client
    shapes and the gateway has a converter for it."""
    dialect = getattr(provider, "dialect", None)
    return dialect if isinstance(dialect, str) and dialect in EMIT_REQUEST and dialect in PARSERS else None


def convert_request(src: str, dst: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A client body in ``src`` as an upstream body in ``dst``; 400 naming a feature that
    ``dst`` cannot carry."""
    try:
        return EMIT_REQUEST[dst](PARSE_REQUEST[src](body))
    except InvalidRequest as exc:
        raise InvalidRequest(f"{exc.message} [converting {src} to {dst}]", param=exc.param) from None


def convert_response(src: str, dst: str, body: Mapping[str, Any]) -> bytes:
    """An upstream's whole answer in ``src`` as the client's ``dst``."""
    return orjson.dumps(EMIT_RESPONSE[dst](PARSE_RESPONSE[src](body)))


class StreamConverter:
    """An upstream stream in ``src`` as the client's ``dst``, one event at a time; nothing is
    held beyond what a target event needs (Anthropic's ``message_delta`` pairs the stop reason
    with the usage that Chat sends one chunk later)."""

    def __init__(self, src: str, dst: str, input_estimate: int | None = None) -> None:
        self.parser = PARSERS[src]()
        self.emitter = EMITTERS[dst](input_estimate)

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for canonical_event in self.parser.feed(ev):
            out.extend(self.emitter.emit(canonical_event))
        return out
