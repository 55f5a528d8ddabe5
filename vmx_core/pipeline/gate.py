"""The ``gate`` stage: capacity admission per leg, reconciliation when the answer is complete,
and the refund of a failed leg (DESIGN §10).  Timed as ``gate`` in the request's stages."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vmx_core.capacity.gate import FREE, CapacityRefused, Gate, Subject
from vmx_core.pipeline.context import RequestContext
from vmx_core.runtime import Connection

#: The request fields that cap output tokens, by API shape.
MAX_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def subject(ctx: RequestContext, conn: Connection) -> Subject:
    assert ctx.tenant is not None and ctx.resource_name is not None and ctx.envelope is not None
    return Subject(
        workspace=ctx.tenant.workspace,
        environment=ctx.tenant.environment,
        connection=conn.name,
        resource=ctx.resource_name,
        api_key=ctx.key.name if ctx.key else None,
        source_ip=ctx.request.source_ip,
        metadata=ctx.envelope.metadata,
    )


def reservation(ctx: RequestContext) -> int:
    """Estimated input tokens plus the most the answer may take (the request's own cap, else
    the resource's ``default_max_tokens``, else nothing until the real usage is known)."""
    if ctx.reserved_tokens is None:
        assert ctx.body is not None and ctx.resource is not None
        ctx.reserved_tokens = ctx.input_tokens() + max_output(ctx.body, ctx.resource.default_max_tokens)
    return ctx.reserved_tokens


def max_output(body: dict[str, Any], default: int | None) -> int:
    for name in MAX_OUTPUT_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default or 0


async def admit(gate: Gate, ctx: RequestContext, conn: Connection) -> None:
    """Admit the leg on ``conn`` or raise ``CapacityRefused`` (``PoolRefused`` for the pool
    gate), with the 429's headers."""
    started = time.perf_counter()
    try:
        s = subject(ctx, conn)
        tokens = reservation(ctx) if gate.needs_tokens(s) else 0
        try:
            # A request over its pool's share may wait for it, never past its own deadline.
            ticket = await gate.admit(s, tokens, patience=max(0.0, ctx.remaining()))
        except CapacityRefused as refused:
            ctx.ratelimit = ratelimit_headers(refused.headers)
            raise
        ctx.capacity = ticket
        ctx.ratelimit = ticket.headers()
    finally:
        ctx.timings.mark("gate", started)


def ratelimit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("x-ratelimit-")}


async def refund(gate: Gate, ctx: RequestContext) -> None:
    """The leg failed: give back what it reserved."""
    ticket, ctx.capacity = ctx.capacity, FREE
    if ticket is not None and ticket is not FREE:
        started = time.perf_counter()
        await gate.refund(ticket)
        ctx.timings.mark("gate", started)


async def settle(gate: Gate, ctx: RequestContext) -> None:
    """The answer is complete: reconcile the reservation to the real usage."""
    ticket, ctx.capacity = ctx.capacity, FREE
    if ticket is not None and ticket is not FREE:
        started = time.perf_counter()
        await gate.settle(ticket, ctx.usage)
        ctx.timings.mark("gate", started)
