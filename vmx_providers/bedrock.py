"""AWS Bedrock: ``bedrock`` (Converse and ConverseStream, every foundation model) and
``bedrock-invoke`` (InvokeModel and InvokeModelWithResponseStream with the Anthropic Messages
body, for Claude).

``bedrock`` speaks none of the client shapes: requests are converted to Converse
(``vmx_core/wire/converse.py``) and its answers and event streams back to the client's shape.

``bedrock-invoke``

``/anthropic/messages`` passes through with cache markers and thinking intact: the body is the
client's minus ``model`` and ``stream`` (Bedrock takes them from the URL), plus
``anthropic_version: bedrock-2023-05-31``; beta flags (the client's ``anthropic-beta`` header
or a body ``betas`` list) become the body's ``anthropic_beta``.  The streamed answer arrives as
binary event-stream frames whose ``chunk`` payloads hold Anthropic's own stream events, which
are relayed as the SSE events an Anthropic client expects.

Requests are signed with botocore's SigV4 and sent over ``vmx_core.http`` (``_aws.py``).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson
from attrs import frozen

from vmx_core import hookimpl
from vmx_core.errors import CountNotSupported, UpstreamHTTPError, UpstreamProtocolError
from vmx_core.http import Response
from vmx_core.providers import ConnectionSpec, UpstreamCall, UpstreamReply
from vmx_core.wire import sse
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEEvent
from vmx_providers._aws import AwsSigner, post_signed
from vmx_providers._eventstream import EventStreamDecoder
from vmx_providers._http import HttpClient
from vmx_providers.anthropic import split_betas

ANTHROPIC_VERSION = "bedrock-2023-05-31"

#: The members of a Converse request that CountTokens takes (its ``ConverseTokensRequest``):
#: ``inferenceConfig`` does not change the input, and the API has no field for it.
CONVERSE_COUNTED = ("messages", "system", "toolConfig", "additionalModelRequestFields")

#: How Bedrock's 400 ``ValidationException`` reads when it cannot count rather than when the
#: body is wrong: "The provided model doesn't support counting tokens." (most non-Claude
#: models, and models served only through cross-Region inference profiles), or "Document
#: input not supported for token counting".
_COUNT_UNSUPPORTED = re.compile(r"\b(?:doesn.t|does not|not) support(?:ed)?\b.*\bcount", re.IGNORECASE | re.DOTALL)
#: "The provided model doesn't support counting tokens.": the model, not this input.
_MODEL_CANNOT_COUNT = re.compile(r"\bmodel (?:doesn.t|does not) support\b", re.IGNORECASE)


@frozen
class BedrockOptions:
    #: AWS region; default ``AWS_REGION``, then ``AWS_DEFAULT_REGION``, then ``us-east-1``.
    region: str | None = None
    #: A role to assume with STS (cached until shortly before it expires).
    role_arn: str | None = None
    #: Default ``https://bedrock-runtime.{region}.amazonaws.com``.
    base_url: str | None = None
    max_connections: int = 100


def region_of(options: BedrockOptions) -> str:
    return options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _runtime_endpoint(options: BedrockOptions) -> tuple[HttpClient, AwsSigner]:
    """The pooled session to the region's bedrock-runtime endpoint, and its request signer."""
    region = region_of(options)
    base = options.base_url or f"https://bedrock-runtime.{region}.amazonaws.com"
    http = HttpClient.create(base, {}, max_connections=options.max_connections)
    return http, AwsSigner(region, role_arn=options.role_arn)


class _RuntimeClient:
    """What both Bedrock clients share: the endpoint's pooled session and the signer."""

    def __init__(self, http: HttpClient, signer: AwsSigner) -> None:
        self.http = http
        self.signer = signer

    async def _post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes, Any, dict[str, str]]:
        """A signed JSON call, read whole: (status, raw body, parsed body, headers)."""
        headers = {"content-type": "application/json", "accept": "application/json"}
        resp = await post_signed(self.http, self.signer, path, body, headers, timeout, stream=False)
        raw = resp.body
        try:
            return resp.status, raw, orjson.loads(raw), resp.headers
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("Bedrock answered a body that is not JSON") from None

    async def _count(self, model: str, counted: dict[str, Any], timeout: float) -> int:
        """CountTokens (``POST /model/{id}/count-tokens``) of ``{"input": counted}``."""
        try:
            _status, _raw, data, _headers = await self._post(
                f"/model/{quote(model, safe='')}/count-tokens", orjson.dumps({"input": counted}), timeout)
        except UpstreamHTTPError as exc:
            if exc.status == 400 and exc.error_type in (None, "ValidationException") and _COUNT_UNSUPPORTED.search(exc.message):
                raise CountNotSupported(exc.message, model_wide=bool(_MODEL_CANNOT_COUNT.search(exc.message))) from None
            raise
        count = data.get("inputTokens") if isinstance(data, dict) else None
        if not isinstance(count, int) or isinstance(count, bool):
            raise UpstreamProtocolError("Bedrock's token count has no inputTokens")
        return count

    async def aclose(self) -> None:
        await self.http.aclose()


@frozen
class BedrockInvokeProvider:
    name: str = "bedrock-invoke"
    formats: frozenset[Format] = frozenset({Format.ANTHROPIC})
    options_type: type[Any] = BedrockOptions

    def connect(self, spec: ConnectionSpec) -> BedrockInvokeClient:
        return BedrockInvokeClient(*_runtime_endpoint(spec.options))


class BedrockInvokeClient(_RuntimeClient):

    @staticmethod
    def _payload(call: UpstreamCall) -> dict[str, Any]:
        body, headers = split_betas(call.body, call.headers)
        body = {k: v for k, v in body.items() if k not in ("model", "stream")}
        if headers.get("anthropic-beta"):
            body["anthropic_beta"] = headers["anthropic-beta"].split(",")
        body.setdefault("anthropic_version", ANTHROPIC_VERSION)
        return body

    def _body(self, call: UpstreamCall) -> bytes:
        return orjson.dumps(self._payload(call))

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        status, raw, data, headers = await self._post(f"/model/{quote(call.model, safe='')}/invoke", self._body(call), call.timeout)
        return UpstreamReply(status, raw, data, headers)

    async def count_tokens(self, call: UpstreamCall) -> int:
        """Bedrock's count of the input tokens of the InvokeModel body this call would send."""
        body = self._payload(call)
        if "max_tokens" not in body:
            # Claude's InvokeModel body requires max_tokens, which a count request does not
            # carry; it does not change the input count, but must stay above a thinking budget.
            thinking = body.get("thinking")
            budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
            body["max_tokens"] = budget + 1 if isinstance(budget, int) and not isinstance(budget, bool) else 1
        # The API takes the body as a blob, which its JSON protocol carries base64-encoded.
        encoded = base64.b64encode(orjson.dumps(body)).decode("ascii")
        return await self._count(call.model, {"invokeModel": {"body": encoded}}, call.timeout)

    async def open_stream(self, call: UpstreamCall) -> EventStream:
        path = f"/model/{quote(call.model, safe='')}/invoke-with-response-stream"
        headers = {"content-type": "application/json", "accept": "application/vnd.amazon.eventstream"}
        resp = await post_signed(self.http, self.signer, path, self._body(call), headers, call.timeout, stream=True)
        return EventStream(resp, _invoke_event)



@frozen
class BedrockConverseProvider:
    name: str = "bedrock"
    formats: frozenset[Format] = frozenset()
    #: Requests are converted to this dialect (``vmx_core.wire.converse``).
    dialect: str = "bedrock-converse"
    options_type: type[Any] = BedrockOptions

    def connect(self, spec: ConnectionSpec) -> BedrockConverseClient:
        return BedrockConverseClient(*_runtime_endpoint(spec.options))


class BedrockConverseClient(_RuntimeClient):

    @staticmethod
    def _body(call: UpstreamCall) -> bytes:
        # The model id goes in the URL; ``model`` is only there because every upstream body
        # gets the provider's model id.
        return orjson.dumps({k: v for k, v in call.body.items() if k not in ("model", "stream")})

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        status, raw, data, headers = await self._post(f"/model/{quote(call.model, safe='')}/converse", self._body(call), call.timeout)
        # Converse does not say which model answered; the converters read it from here.
        return UpstreamReply(status, raw, {**data, "model": call.model} if isinstance(data, dict) else data, headers)

    async def count_tokens(self, call: UpstreamCall) -> int:
        """Bedrock's count of the input tokens of the Converse request this call would send."""
        counted = {k: call.body[k] for k in CONVERSE_COUNTED if k in call.body}
        return await self._count(call.model, {"converse": counted}, call.timeout)

    async def open_stream(self, call: UpstreamCall) -> EventStream:
        path = f"/model/{quote(call.model, safe='')}/converse-stream"
        headers = {"content-type": "application/json", "accept": "application/vnd.amazon.eventstream"}
        resp = await post_signed(self.http, self.signer, path, self._body(call), headers, call.timeout, stream=True)
        return EventStream(resp, lambda kind, event, payload: _converse_event(kind, event, payload, call.model))



class EventStream:
    """A Bedrock event stream, each message turned into an ``SSEEvent`` by ``convert``."""

    def __init__(self, resp: Response, convert: Callable[[str, str, bytes], SSEEvent]) -> None:
        self.resp = resp
        self.convert = convert
        self.headers: Mapping[str, str] = resp.headers

    def __aiter__(self) -> AsyncIterator[SSEEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[SSEEvent]:
        decoder = EventStreamDecoder()
        async for chunk in self.resp:
            for message in decoder.feed(chunk):
                yield self.convert(message.message_type, message.event_type, message.payload)
        if decoder.pending:
            raise UpstreamProtocolError("the Bedrock event stream ended inside a message (truncated)")

    async def aclose(self) -> None:
        # Read to its end: back to the pool; abandoned or truncated: closed.
        self.resp.release()


def _converse_event(message_type: str, event_type: str, payload: bytes, model: str) -> SSEEvent:
    """A ConverseStream message as the event ``vmx_core.wire.converse`` parses: never sent
    to a client as is (no client speaks Converse), so it carries no raw frame."""
    try:
        data = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(f"a Bedrock {event_type or message_type} frame is not JSON") from None
    if message_type != "event":
        message = data.get("message") or data.get("Message") or event_type
        return SSEEvent("exception", orjson.dumps({"type": event_type, "message": message}).decode(), b"")
    if event_type == "messageStart":
        data = {**data, "model": model}
    return SSEEvent(event_type, orjson.dumps(data).decode(), b"")


def _invoke_event(message_type: str, event_type: str, payload: bytes) -> SSEEvent:
    try:
        data = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(f"a Bedrock {event_type or message_type} frame is not JSON") from None
    if message_type == "event" and event_type == "chunk":
        inner = base64.b64decode(data.get("bytes", ""))
        try:
            kind = orjson.loads(inner).get("type")
        except (orjson.JSONDecodeError, AttributeError):
            raise UpstreamProtocolError("a Bedrock chunk does not hold an Anthropic event") from None
        return SSEEvent(str(kind), inner.decode(), sse.encode(inner, str(kind)))
    # An exception mid-stream (throttling, validation, model errors): Anthropic's error event.
    message = str(data.get("message") or data.get("Message") or event_type or "Bedrock stream error")
    err = orjson.dumps({"type": "error", "error": {"type": event_type or "api_error", "message": message}})
    return SSEEvent("error", err.decode(), sse.encode(err, "error"))


BEDROCK = BedrockConverseProvider()
BEDROCK_INVOKE = BedrockInvokeProvider()


@hookimpl
def vmx_register_providers() -> list[BedrockConverseProvider | BedrockInvokeProvider]:
    return [BEDROCK, BEDROCK_INVOKE]
