"""The shared HTTP layer of the HTTP providers: one pooled keep-alive aiohttp session per
connection, JSON and SSE calls, and the wrapping of every aiohttp error into the vmx tree."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import aiohttp
import orjson
from attrs import define, field

from vmx_core.errors import (
    InvalidRequest,
    ProviderError,
    UpstreamConnectionError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from vmx_core.providers import UpstreamReply
from vmx_core.secrets import Secret, mask
from vmx_core.wire.sse import SSEEvent, SSEParser

#: Upstream error bodies are read only this far: enough for a message, not for a flood.
MAX_ERROR_BODY = 64 * 1024


@define
class HttpClient:
    base_url: str
    headers: dict[str, str]
    #: Credential values scrubbed from any upstream text that reaches a client or a log.
    secrets: tuple[str, ...] = ()
    max_connections: int = 100
    _session: aiohttp.ClientSession | None = field(default=None, init=False)

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

    def session(self) -> aiohttp.ClientSession:
        # Created lazily: connect() runs at config load, possibly outside an event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=60, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self.headers,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret and secret in text:
                text = text.replace(secret, mask(secret))
        return text

    async def post_json(self, path: str, body: Mapping[str, Any], timeout: float, headers: Mapping[str, str] | None = None) -> UpstreamReply:
        try:
            async with self.session().post(
                self.base_url + path,
                data=encode_body(body),
                headers={"content-type": "application/json", **(headers or {})},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                if resp.status >= 300:
                    raise await self.http_error(resp)
                raw = await resp.read()
                return UpstreamReply(resp.status, raw, self._parse_json(raw, resp), dict(resp.headers))
        except aiohttp.ClientError as exc:
            raise wrap_client_error(exc) from None

    async def open_sse(self, path: str, body: Mapping[str, Any], timeout: float, headers: Mapping[str, str] | None = None) -> SSEStream:
        # No total timeout on a stream: the gateway enforces the deadline and the idle timeout.
        try:
            resp = await self.session().post(
                self.base_url + path,
                data=encode_body(body),
                headers={"content-type": "application/json", "accept": "text/event-stream", **(headers or {})},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout),
            )
        except aiohttp.ClientError as exc:
            raise wrap_client_error(exc) from None
        if resp.status >= 300:
            try:
                raise await self.http_error(resp)
            finally:
                resp.close()
        ctype = resp.headers.get("content-type", "")
        if "text/event-stream" not in ctype:
            resp.close()
            raise UpstreamProtocolError(f"the upstream answered a stream request with {ctype or 'no content type'}, not text/event-stream")
        return SSEStream(resp, self)

    def _parse_json(self, raw: bytes, resp: aiohttp.ClientResponse) -> Any:
        try:
            return orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            ctype = resp.headers.get("content-type", "unknown")
            raise UpstreamProtocolError(f"the upstream answered HTTP {resp.status} with a non-JSON body ({ctype})") from None

    async def http_error(self, resp: aiohttp.ClientResponse) -> UpstreamHTTPError:
        try:
            raw = await resp.content.read(MAX_ERROR_BODY)
        except (TimeoutError, aiohttp.ClientError):
            raw = b""
        message, etype, code, param = _error_fields(raw)
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


def wrap_client_error(exc: aiohttp.ClientError) -> ProviderError:
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return UpstreamTimeoutError(f"upstream timed out: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamConnectionError(f"upstream response error: HTTP {exc.status}")
    # The exception text can include the URL but never headers, so no credentials.
    return UpstreamConnectionError(f"upstream connection failed: {type(exc).__name__}: {exc}")


class SSEStream:
    """An open upstream SSE response (implements ``vmx_core.providers.UpstreamStream``)."""

    def __init__(self, resp: aiohttp.ClientResponse, client: HttpClient) -> None:
        self.resp = resp
        self.headers: Mapping[str, str] = dict(resp.headers)
        self._client = client
        self._complete = False
        #: Events already parsed from the last read and not yet handed out: the relay sends
        #: the frames of one read as one write.
        self.ready = 0

    def __aiter__(self) -> AsyncIterator[SSEEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[SSEEvent]:
        parser = SSEParser()
        try:
            async for chunk in self.resp.content.iter_any():
                events = parser.feed(chunk)
                for i, ev in enumerate(events):
                    self.ready = len(events) - i - 1
                    yield ev
        except aiohttp.ClientError as exc:
            raise wrap_client_error(exc) from None
        self.ready = 0
        self._complete = True

    async def aclose(self) -> None:
        if self._complete:
            self.resp.release()  # back to the keep-alive pool
        else:
            self.resp.close()  # abandon: closing the socket cancels the upstream generation
