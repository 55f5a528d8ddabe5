"""``POST /anthropic/v1/messages/count_tokens``: the provider's own count where it has one
(Anthropic), the gateway's estimate (``tokens.py``) otherwise.  Nothing is generated, so no
audit record is written."""

from __future__ import annotations

from vmx_core.errors import ProviderError
from vmx_core.pipeline.context import RequestContext
from vmx_core.pipeline.execute import passthrough_headers, rejected
from vmx_core.pipeline.resolve import resolve, upstream_body
from vmx_core.providers import UpstreamCall
from vmx_core.routing.legs import plan_legs
from vmx_core.runtime import Runtime
from vmx_core.tokens import estimate_request
from vmx_core.wire.formats import Format

#: Seconds a provider-native count may take before the estimate is used instead.
COUNT_TIMEOUT = 10.0


async def count_tokens(rt: Runtime, ctx: RequestContext) -> tuple[int, str]:
    """The input tokens of an Anthropic Messages body, and how they were counted
    (``provider`` or ``estimate``).  Counts for the resource's primary model: routing rules
    may read ``tokens.input``, so they cannot run before the count they would need."""
    resolve(rt, ctx)
    assert ctx.resource is not None and ctx.tenant is not None and ctx.envelope is not None and ctx.body is not None
    ref = plan_legs(ctx.resource, ctx.envelope.secondary_model_index, None)[0].ref
    conn = ctx.tenant.connections[ref.connection]
    ctx.connection, ctx.model = conn, ref.model
    counter = getattr(conn.client, "count_tokens", None)
    if counter is not None and Format.ANTHROPIC in conn.provider.formats:
        call = UpstreamCall(
            format=Format.ANTHROPIC, model=ref.model, body=upstream_body(ctx, ref), stream=False,
            timeout=min(COUNT_TIMEOUT, max(ctx.remaining(), 0.001)),
            headers=passthrough_headers(ctx, Format.ANTHROPIC),
        )
        try:
            return int(await counter(call)), "provider"
        except ProviderError as exc:
            if not exc.retryable:
                raise rejected(exc) from None
            # The upstream is down or slow: an estimate is what this endpoint gives otherwise.
    return estimate_request(ctx.body), "estimate"
