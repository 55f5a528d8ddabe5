"""The OpenAI family: ``openai`` (Chat Completions and Responses), and the providers that speak
OpenAI's Chat Completions shape: ``groq``, ``perplexity`` and ``gemini`` (Google's
OpenAI-compatible endpoint).

Bodies pass through verbatim apart from the model id and the ``vmx`` envelope, so provider
extras (Perplexity's ``search_domain_filter`` and ``citations``, Groq's ``x_groq``, Gemini's
``extra_body.google``) survive in both directions.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

from vmx_core import hookimpl
from vmx_core.errors import ProviderError
from vmx_core.providers import ConnectionSpec, UpstreamCall, UpstreamReply
from vmx_core.wire.formats import Format
from vmx_providers._http import HttpClient, SSEStream

_PATHS = {Format.CHAT_COMPLETIONS: "/chat/completions", Format.RESPONSES: "/responses"}


class NotConfigured(ProviderError):
    """The connection has no API key: another leg may still answer."""

    reason = "not_configured"


@frozen
class OpenAIOptions:
    base_url: str | None = None
    organization: str | None = None
    project: str | None = None
    headers: dict[str, str] = field(factory=dict)
    max_connections: int = 100


@frozen
class OpenAICompatible:
    """A provider speaking OpenAI's wire format at ``default_base_url``."""

    name: str
    default_base_url: str
    formats: frozenset[Format]
    #: Whether the upstream honours ``stream_options.include_usage``.
    stream_usage: bool = True
    options_type: type[Any] = OpenAIOptions

    def connect(self, spec: ConnectionSpec) -> OpenAIClient:
        options: OpenAIOptions = spec.options
        api_key = spec.credentials.get("api_key")
        headers = dict(options.headers)
        if api_key:
            headers["authorization"] = f"Bearer {api_key.reveal()}"
        if options.organization:
            headers["openai-organization"] = options.organization
        if options.project:
            headers["openai-project"] = options.project
        http = HttpClient.create(
            options.base_url or self.default_base_url,
            headers,
            secrets=spec.credentials.values(),
            max_connections=options.max_connections,
        )
        return OpenAIClient(http, configured=bool(api_key), connection=spec.name)


class OpenAIClient:
    def __init__(self, http: HttpClient, *, configured: bool, connection: str) -> None:
        self.http = http
        self.configured = configured
        self.connection = connection

    def _check(self, call: UpstreamCall) -> str:
        if not self.configured:
            raise NotConfigured(f"connection {self.connection!r} has no api_key credential")
        return _PATHS[call.format]

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        path = self._check(call)
        return await self.http.post_json(path, call.body, call.timeout, call.headers)

    async def open_stream(self, call: UpstreamCall) -> SSEStream:
        path = self._check(call)
        return await self.http.open_sse(path, call.body, call.timeout, call.headers)

    async def aclose(self) -> None:
        await self.http.aclose()


CHAT = frozenset({Format.CHAT_COMPLETIONS})

OPENAI = OpenAICompatible("openai", "https://api.openai.com/v1", frozenset({Format.CHAT_COMPLETIONS, Format.RESPONSES}))
GROQ = OpenAICompatible("groq", "https://api.groq.com/openai/v1", CHAT)
# Perplexity reports usage on every chunk and does not document stream_options.
PERPLEXITY = OpenAICompatible("perplexity", "https://api.perplexity.ai", CHAT, stream_usage=False)
GEMINI = OpenAICompatible("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", CHAT)


@hookimpl
def vmx_register_providers() -> list[OpenAICompatible]:
    return [OPENAI, GROQ, PERPLEXITY, GEMINI]
