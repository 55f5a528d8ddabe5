"""What a provider plugin implements.

A :class:`Provider` is a stateless description registered through
``vmx_register_providers``.  For each configured connection the gateway calls
:meth:`Provider.connect` once and keeps the returned :class:`ProviderClient` (which owns the
connection's pooled HTTP session) until shutdown or a config reload.

The gateway hands a client an :class:`UpstreamCall` whose body is already in one of the
provider's native ``formats``, with the model rewritten and ``vmx`` removed.  The client
sends it and returns the raw answer; failures are raised as
:class:`~vmx_core.errors.ProviderError` subclasses, never as driver exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, runtime_checkable

from attrs import field, frozen

from vmx_core.secrets import Secret
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEEvent


@frozen
class ConnectionSpec:
    """One configured connection, as a provider sees it."""

    workspace: str
    environment: str
    name: str
    provider: str
    credentials: Mapping[str, Secret]
    #: The provider's own ``options_type`` instance, already validated.
    options: Any


@frozen
class UpstreamCall:
    format: Format
    model: str
    body: dict[str, Any]
    stream: bool
    #: Seconds this leg may take, already capped by the request deadline.
    timeout: float
    #: Seconds a stream may stay silent before it counts as stalled.
    idle_timeout: float = 60.0
    headers: Mapping[str, str] = field(factory=dict)
    #: Set when the body is in the provider's own dialect (its ``dialect`` attribute, e.g.
    #: ``bedrock-converse``) rather than in one of the client shapes; ``format`` is then the
    #: client's and means nothing to the provider.
    dialect: str | None = None


@frozen
class UpstreamReply:
    status: int
    body: bytes
    #: The body parsed once, for usage and for converters; ``None`` only if it was empty.
    json: Any
    headers: Mapping[str, str] = field(factory=dict)


@runtime_checkable
class UpstreamStream(Protocol):
    """An open upstream stream: iterate events, and always close it.

    Optional, for speed (``vmx_providers._http.SSEStream`` has both): ``ready``, how many
    events are already parsed behind the one just handed out, and ``take_ready()``, those
    events at once (the iterator then skips them)."""

    headers: Mapping[str, str]

    def __aiter__(self) -> AsyncIterator[SSEEvent]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ProviderClient(Protocol):
    async def send(self, call: UpstreamCall) -> UpstreamReply:
        """Send a non-streaming call; raise ``ProviderError`` on failure."""
        ...

    async def open_stream(self, call: UpstreamCall) -> UpstreamStream:
        """Start a streaming call.  Raises ``ProviderError`` if the upstream refuses it
        (non-2xx, connection failure); errors later surface while iterating."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Provider(Protocol):
    #: The name a connection uses in ``provider:``.
    name: str
    #: The client shapes this provider speaks natively (bodies pass through untouched).  A
    #: provider that speaks none of them may instead name its own wire dialect in an optional
    #: ``dialect`` attribute (``bedrock-converse``) that ``vmx_core.wire.convert`` converts to.
    formats: frozenset[Format]
    #: An attrs class for ``options:``; unknown keys are rejected with their path.
    options_type: type[Any]

    def connect(self, spec: ConnectionSpec) -> ProviderClient: ...
