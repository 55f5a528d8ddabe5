"""The state of one request as it moves through the pipeline, and what is derived from it:
the response headers (DESIGN §5), the audit record (§11) and the canonical log line."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from typing import Any

from attrs import define, field
from opentelemetry.trace import Span

from vmx_core import ids
from vmx_core.audit.payload import Payload, PayloadCapture
from vmx_core.audit.record import Attempt, AuditRecord
from vmx_core.config.models import ResourceConfig
from vmx_core.errors import RequestError
from vmx_core.request import ClientRequest, Envelope, header_value, metadata_headers
from vmx_core.runtime import Connection, Runtime, Tenant
from vmx_core.security.apikeys import ApiKey
from vmx_core.telemetry import Telemetry, default_telemetry
from vmx_core.timing import Timings
from vmx_core.tokens import estimate_request
from vmx_core.wire.errors import body_for
from vmx_core.wire.usage import Usage

#: ``round``'s second argument for every stage (``map`` stops at the shorter iterable).
_THREES = itertools.repeat(3)


@define
class RequestContext:
    request: ClientRequest
    #: The runtime this request started on; it finishes on it even across a reload.
    runtime: Runtime | None = None
    request_id: str = field(factory=ids.request_id)
    timestamp: dt.datetime = field(factory=lambda: dt.datetime.now(dt.UTC))
    timings: Timings = field(factory=Timings)
    key: ApiKey | None = None
    tenant: Tenant | None = None
    resource_name: str | None = None
    resource: ResourceConfig | None = None
    envelope: Envelope | None = None
    body: dict[str, Any] | None = None
    stream: bool = False
    deadline: float = 0.0
    routing_rule: str | None = None
    attempts: list[Attempt] = field(factory=list)
    connection: Connection | None = None
    model: str | None = None
    usage: Usage | None = None
    status: int = 0
    error: RequestError | None = None
    finished: bool = False
    #: References to the bodies for ``request_audit_payload``; ``None`` when payloads are off.
    capture: PayloadCapture | None = None
    telemetry: Telemetry = field(factory=default_telemetry)
    #: The ``vmx.request`` span, ended when the request finishes.
    span: Span | None = None
    #: The current leg's capacity ticket (vmx_core.capacity.gate.Ticket), until settled.
    capacity: Any = None
    #: Input estimate + maximum output, computed once when a token limit needs it.
    reserved_tokens: int | None = None
    #: The client body's input-token estimate, once a rule or a limit asked for it.
    _input_tokens: int | None = field(default=None, init=False)
    #: x-ratelimit-* headers of the tightest limit (DESIGN §5).
    ratelimit: dict[str, str] = field(factory=dict)

    def input_tokens(self) -> int:
        """The input-token estimate of the client's body, counted at most once: routing rules
        and token limits both read it."""
        if self._input_tokens is None:
            assert self.body is not None
            self._input_tokens = estimate_request(self.body)
        return self._input_tokens

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def headers(self) -> dict[str, str]:
        h = {"x-vmx-request-id": self.request_id}
        env = self.envelope
        if env is not None:
            if env.correlation_id:
                h["x-vmx-correlation-id"] = header_value(env.correlation_id)
            h.update(metadata_headers(env.metadata))
        if self.resource_name and self.resource is not None:
            h["x-vmx-resource"] = self.resource_name
        if self.connection is not None:
            h["x-vmx-provider"] = self.connection.provider.name
            h["x-vmx-connection"] = self.connection.name
        if self.model:
            h["x-vmx-model"] = self.model
        if self.attempts or self.connection is not None:
            h["x-vmx-attempts"] = str(max(len(self.attempts), 1 if self.connection else 0))
        if self.routing_rule:
            h["x-vmx-routing-rule"] = self.routing_rule
        h["x-vmx-overhead-ms"] = f"{self.timings.overhead_ms():.3f}"
        h.update(self.ratelimit)
        return h

    def audit_record(self) -> AuditRecord:
        u = self.usage
        err = self.error
        stages = self.timings.stages
        # Positional, in the fields' order (a test checks it): matching 35 keywords against the
        # parameters cost more than building the record (issue 9).
        return AuditRecord(
            ids.as_uuid(self.request_id),  # id
            self.timestamp,  # timestamp
            self.request.workspace,  # workspace
            self.request.environment,  # environment
            self.resource_name if self.resource is not None else None,  # resource
            self.connection.name if self.connection else None,  # connection
            self.connection.provider.name if self.connection else None,  # provider
            self.model,  # model
            self.key.name if self.key else None,  # api_key_id
            str(self.request.format),  # format
            self.stream,  # stream
            self.status,  # status_code
            err.openai_code if err else None,  # error_code
            err.message if err else None,  # error_message
            tuple(self.attempts),  # attempts
            self.routing_rule,  # routing_rule
            self.envelope.correlation_id if self.envelope else None,  # correlation_id
            dict(self.envelope.metadata) if self.envelope else {},  # metadata
            u.prompt_tokens if u else None,  # prompt_tokens
            u.completion_tokens if u else None,  # completion_tokens
            u.total_tokens if u else None,  # total_tokens
            u.cached_tokens if u else None,  # cached_tokens
            u.cache_creation_tokens if u else None,  # cache_creation_tokens
            u.reasoning_tokens if u else None,  # reasoning_tokens
            None,  # cost
            self.timings.elapsed_ms(),  # duration_ms
            self.timings.ttft_ms,  # ttft_ms
            self.timings.upstream_ms,  # upstream_ms
            stages.get("gate", 0.0),  # gate_ms
            stages.get("routing", 0.0),  # routing_ms
            self.request.source_ip,  # source_ip
            dict(stages),  # stages
            self._payload() if self.capture is not None else None,  # payload
        )

    def _payload(self) -> Payload:
        assert self.capture is not None
        secrets = [self.request.api_key or ""]
        if self.tenant is not None:
            secrets += [s.reveal() for c in self.tenant.connections.values() for s in c.config.credentials.values()]
        error_body = body_for(self.error, self.request.format) if self.error is not None else None
        return self.capture.freeze(self.request.body, error_body, secrets)

    def log_fields(self) -> dict[str, Any]:
        """The canonical request log line: names, statuses and durations, never a secret."""
        u = self.usage
        stages = self.timings.stages
        return {
            "request_id": self.request_id,
            "workspace": self.request.workspace,
            "environment": self.request.environment,
            "format": str(self.request.format),
            "resource": self.resource_name if self.resource is not None else None,
            "api_key": self.key.name if self.key else None,
            "connection": self.connection.name if self.connection else None,
            "provider": self.connection.provider.name if self.connection else None,
            "model": self.model,
            "stream": self.stream,
            "status": self.status,
            "error_code": self.error.openai_code if self.error else None,
            "attempts": len(self.attempts),
            "correlation_id": self.envelope.correlation_id if self.envelope else None,
            "prompt_tokens": u.prompt_tokens if u else None,
            "completion_tokens": u.completion_tokens if u else None,
            "duration_ms": round(self.timings.elapsed_ms(), 3),
            "upstream_ms": round(self.timings.upstream_ms, 3),
            "overhead_ms": round(self.timings.overhead_ms(), 3),
            "ttft_ms": round(self.timings.ttft_ms, 3) if self.timings.ttft_ms is not None else None,
            # C-level passes rather than a comprehension's frame: same keys, same rounding.
            "stages_ms": dict(zip(stages, map(round, stages.values(), _THREES), strict=True)),
        }
