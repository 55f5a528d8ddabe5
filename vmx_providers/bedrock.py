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

Requests are signed with botocore's SigV4 and sent over aiohttp (``_aws.py``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from attrs import frozen

from vmx_core import hookimpl
from vmx_core.errors import UpstreamProtocolError
from vmx_core.providers import ConnectionSpec, UpstreamCall, UpstreamReply
from vmx_core.wire import sse
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEEvent
from vmx_providers._aws import AwsSigner, post_signed
from vmx_providers._eventstream import EventStreamDecoder
from vmx_providers._http import HttpClient, wrap_client_error
from vmx_providers.anthropic import split_betas

ANTHROPIC_VERSION = "bedrock-2023-05-31"


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
    def _body(call: UpstreamCall) -> bytes:
        body, headers = split_betas(call.body, call.headers)
        body = {k: v for k, v in body.items() if k not in ("model", "stream")}
        if headers.get("anthropic-beta"):
            body["anthropic_beta"] = headers["anthropic-beta"].split(",")
        body.setdefault("anthropic_version", ANTHROPIC_VERSION)
        return orjson.dumps(body)

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        path = f"/model/{quote(call.model, safe='')}/invoke"
        headers = {"content-type": "application/json", "accept": "application/json"}
        resp = await post_signed(self.http, self.signer, path, self._body(call), headers, call.timeout, stream=False)
        try:
            raw = await resp.read()
        except aiohttp.ClientError as exc:
            raise wrap_client_error(exc) from None
        finally:
            resp.release()
        try:
            return UpstreamReply(resp.status, raw, orjson.loads(raw), dict(resp.headers))
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("Bedrock answered a body that is not JSON") from None

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
        path = f"/model/{quote(call.model, safe='')}/converse"
        headers = {"content-type": "application/json", "accept": "application/json"}
        resp = await post_signed(self.http, self.signer, path, self._body(call), headers, call.timeout, stream=False)
        try:
            raw = await resp.read()
        except aiohttp.ClientError as exc:
            raise wrap_client_error(exc) from None
        finally:
            resp.release()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("Bedrock answered a body that is not JSON") from None
        # Converse does not say which model answered; the converters read it from here.
        return UpstreamReply(resp.status, raw, {**data, "model": call.model} if isinstance(data, dict) else data, dict(resp.headers))

    async def open_stream(self, call: UpstreamCall) -> EventStream:
        path = f"/model/{quote(call.model, safe='')}/converse-stream"
        headers = {"content-type": "application/json", "accept": "application/vnd.amazon.eventstream"}
        resp = await post_signed(self.http, self.signer, path, self._body(call), headers, call.timeout, stream=True)
        return EventStream(resp, lambda kind, event, payload: _converse_event(kind, event, payload, call.model))



class EventStream:
    """A Bedrock event stream, each message turned into an ``SSEEvent`` by ``convert``."""

    def __init__(self, resp: aiohttp.ClientResponse, convert: Callable[[str, str, bytes], SSEEvent]) -> None:
        self.resp = resp
        self.convert = convert
        self.headers: Mapping[str, str] = dict(resp.headers)
        self._complete = False

    def __aiter__(self) -> AsyncIterator[SSEEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[SSEEvent]:
        decoder = EventStreamDecoder()
        try:
            async for chunk in self.resp.content.iter_any():
                for message in decoder.feed(chunk):
                    yield self.convert(message.message_type, message.event_type, message.payload)
        except aiohttp.ClientError as exc:
            raise wrap_client_error(exc) from None
        if decoder.pending:
            raise UpstreamProtocolError("the Bedrock event stream ended inside a message (truncated)")
        self._complete = True

    async def aclose(self) -> None:
        if self._complete:
            self.resp.release()
        else:
            self.resp.close()


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
