"""The canonical form between the three client shapes and the provider dialects (DESIGN Part II).

Each dialect module converts its own shape to and from these values, so there are N + M
converters rather than N x M.  The form is *normalised*: the system prompt is hoisted out of
the conversation, consecutive turns of one role are merged, and tool results are parts of a
user turn (where Anthropic keeps them; Chat Completions' ``tool`` messages and Responses'
``function_call_output`` items both map there).  That normal form is what makes "dialect ->
canonical -> dialect" comparable at all.

A stream is a sequence of :data:`Event` values: ``Start``, then blocks (``BlockStart``,
``Delta``..., ``BlockStop``) identified by a running ``index``, then ``Finish``, ``UsageEvent``
and ``End``.  Blocks never interleave in the canonical stream: a parser closes the open block
before it starts another, which is what Anthropic's event model requires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from attrs import evolve, field, frozen

from vmx_core.errors import InvalidRequest
from vmx_core.wire.usage import Usage

# -- content ----------------------------------------------------------------------------------


@frozen
class Text:
    text: str


@frozen
class Image:
    """An image by ``url`` (http/https) or by ``data`` (base64) with its ``media_type``."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None
    #: OpenAI's resolution hint; Anthropic has no equivalent (documented in providers.md).
    detail: str | None = None


@frozen
class ToolCall:
    id: str
    name: str
    #: The arguments as JSON text, exactly as the model produced them (never re-serialised,
    #: so a streamed call and a whole one carry the same bytes).
    arguments: str


@frozen
class ToolResult:
    call_id: str
    content: tuple[Text | Image, ...]
    is_error: bool = False


@frozen
class Thinking:
    text: str
    #: Anthropic's signature over the thinking text; only Anthropic can verify it.
    signature: str | None = None
    #: Anthropic ``redacted_thinking`` data (encrypted, opaque).
    redacted: str | None = None


Part = Text | Image | ToolCall | ToolResult | Thinking
Role = Literal["user", "assistant"]


@frozen
class Message:
    role: Role
    parts: tuple[Part, ...]


# -- request ----------------------------------------------------------------------------------


@frozen
class Tool:
    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(factory=dict, hash=False)
    strict: bool | None = None


@frozen
class ToolChoice:
    #: ``auto``, ``none``, ``required`` (some tool) or ``tool`` (the one named).
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


@frozen
class OutputFormat:
    kind: Literal["json_object", "json_schema"]
    schema: Mapping[str, Any] | None = field(default=None, hash=False)
    name: str | None = None
    strict: bool | None = None


@frozen
class Request:
    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    output_format: OutputFormat | None = None
    #: OpenAI's ``reasoning_effort`` (minimal, low, medium, high, xhigh).
    reasoning_effort: str | None = None
    #: Anthropic's extended-thinking budget in tokens.
    thinking_budget: int | None = None
    stream: bool = False
    user: str | None = None


# -- response ---------------------------------------------------------------------------------

#: Why the model stopped, in one vocabulary for every dialect.
StopReason = Literal["end", "max_tokens", "stop_sequence", "tool_use", "content_filter", "refusal", "pause"]


@frozen
class Response:
    id: str
    model: str
    parts: tuple[Text | ToolCall | Thinking, ...]
    stop_reason: StopReason = "end"
    stop_sequence: str | None = None
    usage: Usage = field(factory=Usage)


# -- stream events ----------------------------------------------------------------------------


@frozen
class Start:
    id: str
    model: str
    #: Input usage when the upstream reports it up front (Anthropic); else ``None``.
    usage: Usage | None = None


@frozen
class BlockStart:
    index: int
    #: The block's kind and fixed fields: ``Text("")``, ``ToolCall(id, name, "")``,
    #: ``Thinking("")`` or ``Thinking("", redacted=DATA)``.
    part: Text | ToolCall | Thinking


@frozen
class Delta:
    index: int
    kind: Literal["text", "arguments", "thinking", "signature"]
    value: str


@frozen
class BlockStop:
    index: int


@frozen
class Finish:
    stop_reason: StopReason
    stop_sequence: str | None = None


@frozen
class UsageEvent:
    usage: Usage


@frozen
class End:
    pass


@frozen
class StreamError:
    message: str
    type: str = "api_error"


Event = Start | BlockStart | Delta | BlockStop | Finish | UsageEvent | End | StreamError


# -- helpers ----------------------------------------------------------------------------------


def obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one: optional nested fields."""
    return value if isinstance(value, dict) else {}


def unsupported(feature: str, target: str, why: str = "") -> InvalidRequest:
    """The 400 for a feature the chosen provider cannot honour: never a silent drop."""
    tail = f" ({why})" if why else ""
    return InvalidRequest(f"{feature}: not supported when the request is converted to {target}{tail}", param=feature)


def normalise(messages: Iterable[Message]) -> tuple[Message, ...]:
    """Merge consecutive turns of one role and drop empty turns: the normal form."""
    out: list[Message] = []
    for m in messages:
        if not m.parts:
            continue
        if out and out[-1].role == m.role:
            out[-1] = evolve(out[-1], parts=out[-1].parts + m.parts)
        else:
            out.append(m)
    return tuple(out)


class Accumulator:
    """Folds a canonical event stream into the whole :class:`Response` it describes.

    Used where a dialect needs the whole answer at the end of a stream (Responses'
    ``response.completed``) and by the tests that prove any chunking gives the same answer.
    Deltas are kept as lists and joined on demand: appending to an immutable part per delta
    would make a long stream quadratic.
    """

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.blocks: dict[int, Text | ToolCall | Thinking] = {}
        self.pieces: dict[int, list[str]] = {}
        self.signatures: dict[int, list[str]] = {}
        self.stop_reason: StopReason = "end"
        self.stop_sequence: str | None = None
        self.usage: Usage | None = None
        self.error: str | None = None

    def add(self, ev: Event) -> None:
        if isinstance(ev, Delta):
            target = self.signatures if ev.kind == "signature" else self.pieces
            target.setdefault(ev.index, []).append(ev.value)
        elif isinstance(ev, Start):
            self.id, self.model, self.usage = ev.id, ev.model, ev.usage
        elif isinstance(ev, BlockStart):
            self.blocks[ev.index] = ev.part
        elif isinstance(ev, Finish):
            self.stop_reason, self.stop_sequence = ev.stop_reason, ev.stop_sequence
        elif isinstance(ev, UsageEvent):
            self.usage = ev.usage
        elif isinstance(ev, StreamError):
            self.error = ev.message

    def part(self, index: int) -> Text | ToolCall | Thinking:
        """Block ``index`` with every delta received so far."""
        part = self.blocks[index]
        body = "".join(self.pieces.get(index, ()))
        if isinstance(part, Text):
            return Text(part.text + body)
        if isinstance(part, ToolCall):
            return evolve(part, arguments=part.arguments + body)
        sig = "".join(self.signatures.get(index, ()))
        return evolve(part, text=part.text + body, signature=(part.signature or "") + sig if sig else part.signature)

    def response(self) -> Response:
        parts = tuple(self.part(i) for i in sorted(self.blocks))
        return Response(self.id, self.model, parts, self.stop_reason, self.stop_sequence, self.usage or Usage())


def merge_usage(base: Usage | None, update: Usage) -> Usage:
    """Usage reported in two halves (input at the start, output at the end): later, non-zero
    values win, so a zero in the second half never erases the first."""
    if base is None:
        return update
    return Usage(
        prompt_tokens=update.prompt_tokens or base.prompt_tokens,
        completion_tokens=update.completion_tokens or base.completion_tokens,
        cached_tokens=update.cached_tokens or base.cached_tokens,
        cache_creation_tokens=update.cache_creation_tokens or base.cache_creation_tokens,
        reasoning_tokens=update.reasoning_tokens or base.reasoning_tokens,
    )
