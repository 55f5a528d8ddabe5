"""The shared HTTP layer of the HTTP providers: one pooled keep-alive client per connection
(``vmx_core.http``), JSON and SSE calls, and upstream error bodies turned into the vmx tree."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import orjson
from attrs import define, field

from vmx_core.errors import (
    InvalidRequest,
    UpstreamConnectionError,
    UpstreamHTTPError,
    UpstreamProtocolError,
)
from vmx_core.http import Client, Response
from vmx_core.providers import UpstreamReply
from vmx_core.secrets import Secret, mask
from vmx_core.wire.sse import SSEEvent, SSEParser

#: Upstream error bodies are read only this far: enough for a message, not for a flood.
MAX_ERROR_BODY = 64 * 1024

#: Every call posts JSON: a default header of the client, encoded once, not per request.
_JSON = {"content-type": "application/json"}
_SSE = {"accept": "text/event-stream"}


@define
class HttpClient:
    base_url: str
    headers: dict[str, str]
    #: Credential values scrubbed from any upstream text that reaches a client or a log.
    secrets: tuple[str, ...] = ()
    max_connections: int = 100
    _client: Client | None = field(default=None, init=False)

    @classmethod
    def create(
        cls,
        base_url: str,
        headers: Mapping[str, str],
        secrets: Iterable[Secret] = (),
        max_connections: int = 100,
    ) -> HttpClient:
        return cls(
            base_url.rstrip("/"),
            dict(headers),
            tuple(s.reveal() for s in secrets if s),
            max_connections,
        )

    def client(self) -> Client:
        # Created on first use, so that a bad base URL or header fails the calls that use it
        # (a 502 naming it) rather than the whole config load.
        client = self._client
        if client is None or client.pool.closed:  # closed: a client used again after aclose()
            try:
                client = Client(self.base_url, {**_JSON, **self.headers}, max_connections=self.max_connections)
            except ValueError as exc:
                raise UpstreamConnectionError(f"the connection's base URL cannot be used: {exc}") from None
            self._client = client
        return client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret and secret in text:
                text = text.replace(secret, mask(secret))
        return text

    async def post_json(self, path: str, body: Mapping[str, Any], timeout: float, headers: Mapping[str, str] | None = None) -> UpstreamReply:
        resp = await self.client().request(
            "POST", path, encode_body(body), headers or None, timeout=timeout
        )
        if resp.status >= 300:
            raise await self.http_error(resp)
        return UpstreamReply(resp.status, resp.body, self._parse_json(resp), resp.headers)

    async def open_sse(self, path: str, body: Mapping[str, Any], timeout: float, headers: Mapping[str, str] | None = None) -> SSEStream:
        # ``timeout`` covers the connection and the response head; the gateway enforces the
        # stream's deadline and idle timeout from there.
        resp = await self.client().request(
            "POST", path, encode_body(body), {**_SSE, **headers} if headers else _SSE, timeout=timeout, stream=True
        )
        if resp.status >= 300:
            try:
                raise await self.http_error(resp)
            finally:
                resp.close()
        ctype = resp.headers.get("content-type", "")
        if "text/event-stream" not in ctype:
            resp.close()
            raise UpstreamProtocolError(f"the upstream answered a stream request with {ctype or 'no content type'}, not text/event-stream")
        return SSEStream(resp)

    def _parse_json(self, resp: Response) -> Any:
        raw = resp.body
        try:
            return orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            ctype = resp.headers.get("content-type", "unknown")
            raise UpstreamProtocolError(f"the upstream answered HTTP {resp.status} with a non-JSON body ({ctype})") from None

    async def http_error(self, resp: Response) -> UpstreamHTTPError:
        try:
            raw = await resp.read(MAX_ERROR_BODY)
        except (UpstreamConnectionError, UpstreamProtocolError):
            raw = b""
        message, etype, code, param = _error_fields(raw[:MAX_ERROR_BODY])
        if etype is None and resp.headers.get("x-amzn-errortype"):
            # AWS services (Bedrock) name the error in a header, e.g.
            # ``ValidationException:http://internal.amazon.com/coral/...``: the name is enough.
            etype = resp.headers["x-amzn-errortype"].split(":", 1)[0]
        if message is None:
            ctype = resp.headers.get("content-type", "unknown").split(";")[0]
            message = f"HTTP {resp.status} {resp.reason or ''}".strip() + f" ({ctype} body)"
        return UpstreamHTTPError(
            resp.status,
            self.scrub(message)[:2000],
            error_type=etype,
            error_code=code,
            param=param,
            retry_after=parse_retry_after(resp.headers.get("retry-after")),
        )


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The upstream body as JSON.  orjson parses 1024 levels of nesting but writes only 254,
    so a body between the two is the client's error (400), not an unhandled TypeError (500)."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        raise InvalidRequest(f"request body cannot be sent upstream: {exc} (nested too deeply?)") from None


def _error_fields(raw: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, code, param) from an OpenAI- or Anthropic-shaped error body."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None, None, None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        msg = err.get("message")
        code = err.get("code")
        return (
            str(msg) if msg is not None else None,
            str(err["type"]) if err.get("type") is not None else None,
            str(code) if code is not None else None,
            str(err["param"]) if err.get("param") is not None else None,
        )
    if isinstance(err, str):
        return err, None, None, None
    # AWS services (Bedrock) answer {"message": "..."} with the error type in a header.
    msg = (data.get("message") or data.get("Message")) if isinstance(data, dict) else None
    if isinstance(msg, str):
        return msg, None, None, None
    return None, None, None, None


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class SSEStream:
    """An open upstream SSE response (implements ``vmx_core.providers.UpstreamStream``)."""

    def __init__(self, resp: Response) -> None:
        self.resp = resp
        self.headers: Mapping[str, str] = resp.headers
        #: Events already parsed from the last read and not yet handed out: the relay sends
        #: the frames of one read as one write.
        self.ready = 0
        self._parsed: list[SSEEvent] = []
        self._next = 0

    def __aiter__(self) -> AsyncIterator[SSEEvent]:
        return self._events()

    def take_ready(self) -> list[SSEEvent]:
        """The events already parsed from the last read, all at once (the iterator then moves
        on to the next read): one call for what would be one ``anext`` per event."""
        parsed, start = self._parsed, self._next
        self._next = len(parsed)
        self.ready = 0
        return parsed[start:]

    async def _events(self) -> AsyncIterator[SSEEvent]:
        parser = SSEParser()
        async for chunk in self.resp:
            parsed = self._parsed = parser.feed(chunk)
            self._next = 0
            while self._next < len(parsed):
                ev = parsed[self._next]
                self._next += 1
                self.ready = len(parsed) - self._next
                yield ev
        self.ready = 0

    async def aclose(self) -> None:
        # Read to its end: back to the keep-alive pool; abandoned: closed, which stops the
        # upstream's generation.
        self.resp.release()
