"""Trying the legs (DESIGN §9): each under the request deadline, with per-leg retries and
``Retry-After``, failing over only on what another provider could fix."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from vmx_core.audit.record import Attempt
from vmx_core.capacity.gate import CapacityRefused, Gate
from vmx_core.deadline import deadline
from vmx_core.errors import (
    InvalidRequest,
    PrioritizationDenied,
    ProviderError,
    RequestError,
    UpstreamFailed,
    UpstreamHTTPError,
    UpstreamRejected,
    UpstreamStalledError,
    UpstreamTimeout,
    UpstreamTimeoutError,
)
from vmx_core.pipeline import gate as gate_stage
from vmx_core.pipeline.context import RequestContext
from vmx_core.pipeline.convert import converted_body
from vmx_core.pipeline.resolve import upstream_body
from vmx_core.providers import UpstreamCall
from vmx_core.routing.breaker import CircuitBreaker
from vmx_core.routing.health import is_upstream_failure
from vmx_core.routing.legs import Leg, should_fail_over
from vmx_core.runtime import Connection
from vmx_core.wire.convert import provider_dialect, target_format
from vmx_core.wire.formats import Format

T = TypeVar("T")

#: Called with (context, connection, call); returns the leg's result or raises ProviderError.
LegFn = Callable[[RequestContext, Connection, UpstreamCall], Awaitable[T]]


async def run_legs(
    ctx: RequestContext,
    legs: list[Leg],
    attempt: LegFn[T],
    breaker: CircuitBreaker | None = None,
    capacity: Gate | None = None,
) -> T:
    """Run ``attempt`` on each leg in turn until one succeeds.

    Each leg is first admitted by ``capacity``; a refusal by the leg's connection alone (its
    limits, or its pool gate after any wait) fails over like an upstream 429 (DESIGN §9), any
    other refusal answers 429 at once.  A failed leg's reservation is refunded; a successful
    one stays on ``ctx.capacity`` to be settled.

    Raises the client-facing error: ``UpstreamRejected`` for a 4xx that is the client's fault,
    ``UpstreamTimeout`` when the deadline passes, ``CapacityRefused`` when every leg was refused
    for capacity, ``UpstreamFailed`` naming every leg.
    """
    assert ctx.tenant is not None and ctx.resource is not None and ctx.body is not None
    fmt = ctx.request.format
    unsupported: list[str] = []
    refusals: list[CapacityRefused] = []
    #: Legs whose provider cannot honour a feature of the request once converted (400s).
    refused: list[InvalidRequest] = []
    for leg in legs:
        conn = ctx.tenant.connections[leg.ref.connection]
        with ctx.telemetry.leg(ctx, conn, leg.ref.model):
            target = target_format(fmt, conn.provider.formats)
            dialect = provider_dialect(conn.provider) if target is None else None
            if target is None and dialect is None:
                unsupported.append(f"{conn.name} ({conn.provider.name})")
                ctx.attempts.append(Attempt(conn.name, conn.provider.name, leg.ref.model, None, "unsupported_format", 0.0))
                continue
            converted: dict[str, Any] | None = None
            if target is not fmt:
                try:
                    converted = converted_body(ctx, leg.ref, target or dialect or "")
                except InvalidRequest as exc:
                    # Another leg (one that speaks the client's shape) may still serve it.
                    refused.append(exc)
                    ctx.attempts.append(
                        Attempt(conn.name, conn.provider.name, leg.ref.model, None, "unsupported_feature", 0.0, exc.message[:300])
                    )
                    continue
            circuit = (ctx.tenant.workspace, ctx.tenant.environment, conn.name)
            cb_config = ctx.resource.circuit_breaker if breaker is not None else None
            if breaker is not None and cb_config is not None and not breaker.allow(circuit, cb_config):
                ctx.attempts.append(Attempt(conn.name, conn.provider.name, leg.ref.model, None, "circuit_open", 0.0))
                continue
            if capacity is not None:
                try:
                    await gate_stage.admit(capacity, ctx, conn)
                except CapacityRefused as refusal:
                    reason = "prioritization_denied" if isinstance(refusal, PrioritizationDenied) else "capacity_exhausted"
                    ctx.attempts.append(Attempt(conn.name, conn.provider.name, leg.ref.model, 429, reason, 0.0))
                    if not refusal.connection_only:
                        raise
                    refusals.append(refusal)
                    continue
            tries = 1 + leg.ref.max_retries
            for try_no in range(tries):
                remaining = ctx.remaining()
                if remaining <= 0:
                    await _refund(capacity, ctx)
                    raise UpstreamTimeout(_timeout_message(ctx))
                leg_timeout = min(remaining, leg.ref.timeout_ms / 1000 if leg.ref.timeout_ms else remaining)
                built = time.perf_counter()
                body = upstream_body(ctx, leg.ref) if converted is None else dict(converted)
                ctx.timings.mark("conversion", built)
                call = UpstreamCall(
                    format=target or fmt,
                    dialect=dialect,
                    model=leg.ref.model,
                    body=body,
                    stream=ctx.stream,
                    timeout=leg_timeout,
                    idle_timeout=ctx.resource.stream_idle_timeout_ms / 1000,
                    headers=passthrough_headers(ctx, target or fmt) if dialect is None else {},
                )
                ctx.connection, ctx.model = conn, leg.ref.model
                started = time.perf_counter()
                try:
                    with ctx.telemetry.upstream_call(ctx, conn, call):
                        with deadline(leg_timeout):
                            result = await attempt(ctx, conn, call)
                except TimeoutError:
                    error: ProviderError = UpstreamTimeoutError(f"no answer within {leg_timeout * 1000:.0f} ms")
                except ProviderError as exc:
                    error = exc
                else:
                    ctx.attempts.append(
                        Attempt(conn.name, conn.provider.name, leg.ref.model, 200, None, (time.perf_counter() - started) * 1000)
                    )
                    if breaker is not None and cb_config is not None:
                        breaker.record(circuit, failed=False)
                    return result
                finally:
                    ctx.timings.upstream_ms += (time.perf_counter() - started) * 1000
                status = error.status if isinstance(error, UpstreamHTTPError) else None
                ctx.attempts.append(
                    Attempt(
                        conn.name, conn.provider.name, leg.ref.model, status, error.reason,
                        (time.perf_counter() - started) * 1000, error.message[:300],
                    )
                )
                if breaker is not None and cb_config is not None:
                    failed = is_upstream_failure(ctx.attempts[-1])
                    if failed is not None:
                        breaker.record(circuit, failed=failed)
                # A leg timed out on the request deadline itself: that is a 504 even when the timer
                # fired a hair before ``remaining()`` (perf_counter) reaches 0 -- the event loop's
                # clock is another clock, with coarser (uvloop: millisecond) resolution.
                deadline_hit = isinstance(error, UpstreamTimeoutError) and leg_timeout >= remaining
                if deadline_hit or ctx.remaining() <= 0:
                    await _refund(capacity, ctx)
                    raise UpstreamTimeout(_timeout_message(ctx))
                if not should_fail_over(error, ctx.resource):
                    await _refund(capacity, ctx)
                    raise rejected(error)
                if try_no + 1 < tries and await _wait_retry_after(ctx, error):
                    continue
                break
            await _refund(capacity, ctx)
    if refusals and all(a.reason in _NOT_TRIED for a in ctx.attempts):
        # Every leg was refused by the gateway itself: 429, retry when the first one frees up.
        first_free = min(refusals, key=lambda r: int(r.headers.get("retry-after", "1")))
        ctx.ratelimit = gate_stage.ratelimit_headers(first_free.headers)
        raise first_free
    if refused and len(refused) + len(unsupported) == len(ctx.attempts):
        raise refused[0]
    if unsupported and len(unsupported) == len(ctx.attempts):
        raise InvalidRequest(
            f"the {fmt} endpoint is not supported by the provider of "
            + ", ".join(unsupported)
            + " (conversion between API shapes is not available for it)"
        )
    raise UpstreamFailed(_failed_message(ctx))


#: Attempt reasons that mean no upstream call was made.
_NOT_TRIED = frozenset(
    {"capacity_exhausted", "prioritization_denied", "circuit_open", "unsupported_format", "unsupported_feature"}
)


async def _refund(capacity: Gate | None, ctx: RequestContext) -> None:
    if capacity is not None:
        await gate_stage.refund(capacity, ctx)


#: Client headers that carry meaning for an upstream of the same shape (Anthropic SDKs send
#: beta flags as a header, not in the body).
_FORWARDED = {Format.ANTHROPIC: ("anthropic-beta",)}


def passthrough_headers(ctx: RequestContext, target: Format) -> dict[str, str]:
    if target is not ctx.request.format:
        return {}
    names = _FORWARDED.get(target, ())
    return {n: ctx.request.headers[n] for n in names if n in ctx.request.headers}


async def _wait_retry_after(ctx: RequestContext, error: ProviderError) -> bool:
    """Whether to retry the same leg: only when an upstream ``Retry-After`` fits the deadline
    (DESIGN §9).  Without one, a retry goes at once."""
    wait = error.retry_after or 0.0
    if wait >= ctx.remaining():
        return False
    if wait > 0:
        await asyncio.sleep(wait)
    return True


def rejected(error: ProviderError) -> RequestError:
    if isinstance(error, UpstreamHTTPError):
        return UpstreamRejected(error.status, f"upstream rejected the request: {error.message}", code=error.error_code, param=error.param)
    return UpstreamFailed(error.message)


def _failed_message(ctx: RequestContext) -> str:
    parts = []
    for a in ctx.attempts:
        what = f"HTTP {a.status}" if a.status else a.reason
        parts.append(f"{a.connection}/{a.model}: {what}" + (f" ({a.message})" if a.message else ""))
    return "all upstream attempts failed: " + "; ".join(parts)


def _timeout_message(ctx: RequestContext) -> str:
    tried = ", ".join(f"{a.connection}/{a.model}" for a in ctx.attempts) or "none"
    return f"the request deadline passed (legs tried: {tried})"


async def first_event(stream: AsyncIterator[T], idle: float) -> T:
    """The first item of an upstream stream, or a stall/truncation error."""
    try:
        with deadline(idle):
            return await anext(stream)
    except TimeoutError:
        raise UpstreamStalledError(f"the stream sent nothing for {idle * 1000:.0f} ms") from None


def wants_stream_usage(fmt: Format, body: dict[str, object]) -> bool:
    opts = body.get("stream_options")
    return fmt is Format.CHAT_COMPLETIONS and isinstance(opts, dict) and bool(opts.get("include_usage"))
