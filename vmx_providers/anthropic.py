"""``anthropic``: Anthropic's Messages API over ``vmx_core.http``.

Bodies on ``/anthropic/messages`` pass through verbatim apart from the model id and the ``vmx``
envelope, so ``cache_control``, ``thinking`` and its signatures, server tools, ``top_k`` and
``service_tier`` reach Anthropic untouched.  Beta flags travel as the ``anthropic-beta``
header, which is where Anthropic reads them: a body ``betas`` list (Bedrock's convention, and
the only way for clients that can set body fields alone, e.g. through ``providerArgs``) is
moved there, and a client's own ``anthropic-beta`` header (what the Anthropic SDK sends) is
forwarded.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

from vmx_core import hookimpl
from vmx_core.errors import InvalidRequest, UpstreamProtocolError
from vmx_core.providers import ConnectionSpec, UpstreamCall, UpstreamReply
from vmx_core.wire.formats import Format
from vmx_providers._http import HttpClient, SSEStream
from vmx_providers.openai import NotConfigured

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"


@frozen
class AnthropicOptions:
    #: Without ``/v1`` (as the Anthropic SDK takes it): ``https://api.anthropic.com``.
    base_url: str | None = None
    version: str = "2023-06-01"
    headers: dict[str, str] = field(factory=dict)
    max_connections: int = 100


@frozen
class AnthropicProvider:
    name: str = "anthropic"
    formats: frozenset[Format] = frozenset({Format.ANTHROPIC})
    options_type: type[Any] = AnthropicOptions

    def connect(self, spec: ConnectionSpec) -> AnthropicClient:
        options: AnthropicOptions = spec.options
        api_key = spec.credentials.get("api_key")
        headers = {**options.headers, "anthropic-version": options.version}
        if api_key:
            headers["x-api-key"] = api_key.reveal()
        http = HttpClient.create(
            options.base_url or "https://api.anthropic.com",
            headers,
            secrets=spec.credentials.values(),
            max_connections=options.max_connections,
        )
        return AnthropicClient(http, configured=bool(api_key), connection=spec.name)


class AnthropicClient:
    def __init__(self, http: HttpClient, *, configured: bool, connection: str) -> None:
        self.http = http
        self.configured = configured
        self.connection = connection

    def _prepare(self, call: UpstreamCall) -> tuple[dict[str, Any], dict[str, str]]:
        if not self.configured:
            raise NotConfigured(f"connection {self.connection!r} has no api_key credential")
        return split_betas(call.body, call.headers)

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        body, headers = self._prepare(call)
        return await self.http.post_json(MESSAGES, body, call.timeout, headers)

    async def open_stream(self, call: UpstreamCall) -> SSEStream:
        body, headers = self._prepare(call)
        return await self.http.open_sse(MESSAGES, body, call.timeout, headers)

    async def count_tokens(self, call: UpstreamCall) -> int:
        """Anthropic's own count of the request's input tokens."""
        body, headers = self._prepare(call)
        body.pop("stream", None)
        body.pop("max_tokens", None)
        reply = await self.http.post_json(COUNT_TOKENS, body, call.timeout, headers)
        count = reply.json.get("input_tokens") if isinstance(reply.json, dict) else None
        if not isinstance(count, int):
            raise UpstreamProtocolError("the upstream's token count has no input_tokens")
        return count

    async def aclose(self) -> None:
        await self.http.aclose()


def split_betas(body: dict[str, Any], headers: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The body without ``betas``, and the headers with them joined into ``anthropic-beta``."""
    out_headers = dict(headers)
    if "betas" not in body:
        return body, out_headers
    body = dict(body)
    betas = body.pop("betas")
    if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
        raise InvalidRequest("betas: must be an array of strings", param="betas")
    flags = [f for f in out_headers.get("anthropic-beta", "").split(",") if f.strip()] + betas
    if flags:
        out_headers["anthropic-beta"] = ",".join(dict.fromkeys(f.strip() for f in flags))
    return body, out_headers


ANTHROPIC = AnthropicProvider()


@hookimpl
def vmx_register_providers() -> list[AnthropicProvider]:
    return [ANTHROPIC]
