"""The audit record (DESIGN §11) and the sink protocol every audit backend implements."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from attrs import field, frozen

from vmx_core.audit.payload import Payload
from vmx_core.audit.rounding import round_to


# ``slots=False``: one is made per leg, and a frozen slotted class's ``__init__`` sets each field through
# ``object.__setattr__``; with an instance dict it stores them straight into it, at half the cost.
@frozen(slots=False)
class Attempt:
    """One leg of a request: what was tried and how it ended."""

    connection: str
    provider: str
    model: str
    status: int | None
    reason: str | None
    duration_ms: float
    #: The upstream's own words, scrubbed of credentials and cut short.
    message: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "connection": self.connection,
            "provider": self.provider,
            "model": self.model,
            "status": self.status,
            "reason": self.reason,
            "duration_ms": round_to(self.duration_ms, 3),
            "message": self.message,
        }


# ``slots=False``: one is made per request, and a frozen slotted class's ``__init__`` sets each field through
# ``object.__setattr__``; with an instance dict it stores them straight into it, at half the cost.
@frozen(slots=False)
class AuditRecord:
    id: uuid.UUID
    timestamp: dt.datetime
    workspace: str
    environment: str
    resource: str | None
    connection: str | None
    provider: str | None
    model: str | None
    api_key_id: str | None
    format: str
    stream: bool
    status_code: int
    error_code: str | None
    error_message: str | None
    attempts: tuple[Attempt, ...]
    routing_rule: str | None
    correlation_id: str | None
    metadata: Mapping[str, str]
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    cache_creation_tokens: int | None
    reasoning_tokens: int | None
    cost: float | None
    duration_ms: float
    ttft_ms: float | None
    upstream_ms: float
    gate_ms: float
    routing_ms: float
    source_ip: str | None
    stages: Mapping[str, float] = field(factory=dict)
    #: The bodies, when ``audit.payloads`` is ``redacted`` or ``full`` (else ``None``).
    payload: Payload | None = None


@runtime_checkable
class AuditSink(Protocol):
    """Receives finished records.  ``enqueue`` is called on the request path and must not
    block or raise; durable writing happens in the sink's own task."""

    name: str

    def enqueue(self, record: AuditRecord) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None:
        """Flush everything queued, then stop."""
        ...
