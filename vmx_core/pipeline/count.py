"""``POST /anthropic/v1/messages/count_tokens``: the provider's own count where its client has
one (``count_tokens``: Anthropic, Bedrock), the gateway's estimate (``tokens.py``) otherwise.
Nothing is generated, so no audit record is written.

The body is an Anthropic one; a provider that speaks another shape gets it converted exactly
as a completion would be (``execute.run_legs``), so what it counts is what it would be sent.
"""

from __future__ import annotations

import time
from typing import Any

from vmx_core.errors import CountNotSupported, InvalidRequest, ProviderError
from vmx_core.pipeline.context import RequestContext
from vmx_core.pipeline.convert import converted_body
from vmx_core.pipeline.execute import passthrough_headers, rejected
from vmx_core.pipeline.resolve import resolve, upstream_body
from vmx_core.providers import UpstreamCall
from vmx_core.routing.legs import plan_legs
from vmx_core.runtime import Runtime
from vmx_core.tokens import estimate_request
from vmx_core.wire.convert import provider_dialect, target_format

#: Seconds a provider-native count may take before the estimate is used instead.
COUNT_TIMEOUT = 10.0
#: How long a model whose provider said it cannot count is answered by the estimate without
#: asking again: a count per request would otherwise be a failing upstream call per request,
#: and a provider may start counting for the model later.
UNSUPPORTED_TTL = 3600.0
#: At most this many models are remembered: with granted resource overrides a client names
#: the model, so the memory must not grow with what clients send.
MAX_UNSUPPORTED = 1024
#: The clock of that memory (tests move it).
clock = time.monotonic


async def count_tokens(rt: Runtime, ctx: RequestContext) -> tuple[int, str]:
    """The input tokens of an Anthropic Messages body, and how they were counted
    (``provider`` or ``estimate``).  Counts for the resource's primary model: routing rules
    may read ``tokens.input``, so they cannot run before the count they would need.

    The estimate answers when the provider has no counter, cannot be sent the request (a
    feature its shape cannot carry), says it cannot count it (``CountNotSupported``), or is
    down or slow; any other refusal of the body is the client's error, passed on."""
    resolve(rt, ctx)
    assert ctx.resource is not None and ctx.tenant is not None and ctx.envelope is not None and ctx.body is not None
    ref = plan_legs(ctx.resource, ctx.envelope.secondary_model_index, None)[0].ref
    conn = ctx.tenant.connections[ref.connection]
    ctx.connection, ctx.model = conn, ref.model
    counter = getattr(conn.client, "count_tokens", None)
    if counter is None:
        return estimate_request(ctx.body), "estimate"
    cannot = (ctx.request.workspace, ctx.request.environment, ref.connection, ref.model)
    until = rt.count_unsupported.get(cannot)
    if until is not None:
        if clock() < until:
            return estimate_request(ctx.body), "estimate"
        del rt.count_unsupported[cannot]
    fmt = ctx.request.format
    target = target_format(fmt, conn.provider.formats)
    dialect = provider_dialect(conn.provider) if target is None else None
    if target is None and dialect is None:
        return estimate_request(ctx.body), "estimate"
    body: dict[str, Any]
    if target is fmt:
        body = upstream_body(ctx, ref)
    else:
        try:
            body = converted_body(ctx, ref, target or dialect or "")
        except InvalidRequest:
            # A completion on this model would be refused with that 400, naming the field; a
            # count is advisory, and the estimate still says how big the request is.
            return estimate_request(ctx.body), "estimate"
    call = UpstreamCall(
        format=target or fmt, dialect=dialect, model=ref.model, body=body, stream=False,
        timeout=min(COUNT_TIMEOUT, max(ctx.remaining(), 0.001)),
        headers=passthrough_headers(ctx, target or fmt) if dialect is None else {},
    )
    try:
        return int(await counter(call)), "provider"
    except CountNotSupported as exc:
        if exc.model_wide:
            _remember(rt.count_unsupported, cannot)
    except ProviderError as exc:
        if not exc.retryable:
            raise rejected(exc) from None
        # The upstream is down or slow: an estimate is what this endpoint gives otherwise.
    return estimate_request(ctx.body), "estimate"


def _remember(memory: dict[tuple[str, str, str, str], float], key: tuple[str, str, str, str]) -> None:
    now = clock()
    if len(memory) >= MAX_UNSUPPORTED:
        for stale in [k for k, until in memory.items() if until <= now]:
            del memory[stale]
        if len(memory) >= MAX_UNSUPPORTED:
            return
    memory[key] = now + UNSUPPORTED_TTL
