"""The completion pipeline (DESIGN Part II), one function per stage, each timed:

authenticate -> resolve resource (+ granted overrides) -> parse body -> route -> for each leg:
provider call -> on failure, next leg -> respond -> enqueue the audit record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from vmx_core.audit.payload import PayloadCapture
from vmx_core.config.models import ModelRef
from vmx_core.errors import ConfigError, InvalidRequest, UpstreamProtocolError
from vmx_core.pipeline import gate as gate_stage
from vmx_core.pipeline.context import RequestContext
from vmx_core.pipeline.convert import STAGE as CONVERSION
from vmx_core.pipeline.convert import ConvertedStream
from vmx_core.pipeline.execute import first_event, run_legs, wants_stream_usage
from vmx_core.pipeline.resolve import resolve
from vmx_core.pipeline.stream import relay
from vmx_core.providers import UpstreamCall, UpstreamStream
from vmx_core.reply import Completion, Reply, StreamingCompletion
from vmx_core.routing.functions import RuleContext
from vmx_core.routing.legs import plan_legs
from vmx_core.routing.rules import RuleSet
from vmx_core.routing.variables import rule_variables
from vmx_core.runtime import Connection, Runtime
from vmx_core.tokens import estimate_request
from vmx_core.wire.convert import EMIT_RESPONSE, PARSE_RESPONSE, StreamConverter
from vmx_core.wire.formats import Format
from vmx_core.wire.streams import StreamWatcher, usage_from_body

__all__ = ["RequestContext", "run"]

Finish = Callable[[RequestContext], None]


async def run(rt: Runtime, ctx: RequestContext, finish: Finish) -> Reply:
    """Answer one request.  ``finish`` is called exactly once, when the answer is complete
    (for streams: when the stream ends), to write the audit record and the log line."""
    audit = rt.config.audit
    if audit.payloads != "none":
        ctx.capture = PayloadCapture(audit.max_stream_payload_bytes)
    resolve(rt, ctx)
    assert ctx.resource is not None and ctx.envelope is not None
    t = time.perf_counter()
    with ctx.telemetry.span(ctx, "vmx.routing") as span:
        routed = await route(rt, ctx) if ctx.envelope.secondary_model_index is None else None
        legs = plan_legs(ctx.resource, ctx.envelope.secondary_model_index, routed)
        span.set_attribute("vmx.legs", len(legs))
        if ctx.routing_rule:
            span.set_attribute("vmx.routing_rule", ctx.routing_rule)
    ctx.timings.mark("routing", t)
    if ctx.stream:
        return await _stream(rt, ctx, legs, finish)
    reply = await run_legs(ctx, legs, _send, rt.breaker, rt.gate)
    await gate_stage.settle(rt.gate, ctx)
    ctx.timings.mark("respond", time.perf_counter())
    ctx.status = 200
    completion = Completion(status=200, headers=ctx.headers(), body=reply)
    finish(ctx)
    return completion


async def route(rt: Runtime, ctx: RequestContext) -> ModelRef | None:
    """Evaluate the resource's rules once; the routed model heads the fallback chain."""
    resource, tenant, name = ctx.resource, ctx.tenant, ctx.resource_name
    assert resource is not None and tenant is not None and name is not None
    assert ctx.envelope is not None and ctx.body is not None
    if not resource.routing:
        return None
    rules = tenant.rules.get(name)
    if rules is None or resource is not tenant.resources.get(name):
        # Granted routing overrides: compiled per request (only for keys allowed to).
        try:
            rules = RuleSet.compile(resource.routing, rt.functions, "vmx.resourceConfigOverrides.routing")
        except ConfigError as exc:
            path, message = exc.errors[0]
            raise InvalidRequest(f"{path}: {message}", param="vmx.resourceConfigOverrides.routing") from None
    variables = rule_variables(
        ctx.request.format, ctx.body, ctx.envelope.metadata, ctx.key.name if ctx.key else None,
        input_tokens=ctx.input_tokens,
    )
    context = RuleContext(tenant.workspace, tenant.environment, resource.model.connection, rt.health, rt.gate)
    decision = await rules.route(variables, rt.functions, context, ctx.envelope.correlation_id)
    ctx.routing_rule = decision.rule
    return decision.ref


async def _send(ctx: RequestContext, conn: Connection, call: UpstreamCall) -> bytes:
    if ctx.capture is not None:
        ctx.capture.upstream = call.body
    reply = await conn.client.send(call)
    if not isinstance(reply.json, dict):
        raise UpstreamProtocolError("the upstream answered a body that is not a JSON object")
    if call.dialect is None and call.format is ctx.request.format:
        ctx.usage = usage_from_body(call.format, reply.json)
        if ctx.capture is not None:
            ctx.capture.response = reply.body
        return reply.body
    started = time.perf_counter()
    try:
        answer = PARSE_RESPONSE[call.dialect or call.format](reply.json)
        ctx.usage = answer.usage
        body = orjson.dumps(EMIT_RESPONSE[ctx.request.format](answer))
    finally:
        ctx.timings.mark(CONVERSION, started)
    if ctx.capture is not None:  # what the client receives: the converted answer
        ctx.capture.response = body
    return body


async def _stream(rt: Runtime, ctx: RequestContext, legs: list[Any], finish: Finish) -> StreamingCompletion:
    assert ctx.body is not None and ctx.resource is not None
    fmt = ctx.request.format
    client_wants_usage = wants_stream_usage(fmt, ctx.body)
    idle = ctx.resource.stream_idle_timeout_ms / 1000

    async def attempt(ctx: RequestContext, conn: Connection, call: UpstreamCall) -> StreamingCompletion:
        converting = call.format is not fmt or call.dialect is not None
        strip = False
        if call.dialect is None and call.format is Format.CHAT_COMPLETIONS and getattr(conn.provider, "stream_usage", False):
            # Usage is always captured: ask for it, and hide the extra chunk from a client
            # that did not ask (a converted stream ends with one whenever usage is known).
            opts = call.body.get("stream_options")
            call.body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        if fmt is Format.CHAT_COMPLETIONS and not client_wants_usage:
            strip = converting or getattr(conn.provider, "stream_usage", False)
        if ctx.capture is not None:
            ctx.capture.upstream = call.body
        upstream: UpstreamStream = await conn.client.open_stream(call)
        if converting:
            # Anthropic's message_start announces input usage before any upstream reports it.
            estimate = estimate_request(call.body) if fmt is Format.ANTHROPIC else None
            upstream = ConvertedStream(upstream, StreamConverter(call.dialect or call.format, fmt, estimate), ctx.timings)
        events = aiter(upstream)
        watcher = StreamWatcher(fmt, strip_usage_chunk=strip)
        # Hold lifecycle frames back until the first content: until then nothing has reached
        # the client, so a failing leg can still fail over invisibly (DESIGN §9).
        held: list[bytes] = []
        try:
            while not (watcher.content_started or watcher.terminal):
                ev = await first_event(events, min(idle, ctx.remaining()))
                if watcher.observe(ev):
                    held.append(ev.raw)
                if watcher.failed:
                    raise UpstreamProtocolError(f"the upstream stream failed before any content: {watcher.failed}")
        except StopAsyncIteration:
            await upstream.aclose()
            raise UpstreamProtocolError("the upstream stream ended before any content") from None
        except BaseException:
            await upstream.aclose()
            raise
        ctx.timings.ttft_ms = ctx.timings.elapsed_ms()
        frames = relay(ctx, upstream, events, held, watcher, idle, finish, settle)
        return StreamingCompletion(status=200, headers={}, frames=frames)

    async def settle(ctx: RequestContext) -> None:
        await gate_stage.settle(rt.gate, ctx)

    reply = await run_legs(ctx, legs, attempt, rt.breaker, rt.gate)
    reply.headers = ctx.headers()
    return reply
