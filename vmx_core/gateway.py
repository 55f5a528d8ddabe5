"""The Gateway: the engine a team embeds, usable without any web framework.

::

    async with Gateway.from_file("vmx.yaml") as gw:
        completion = await gw.chat_completions("acme", "prod", {"model": "chat", ...}, api_key=KEY)
        print(completion.json()["choices"][0]["message"]["content"])

        async for chunk in gw.stream_chat_completions("acme", "prod", {...}, api_key=KEY):
            ...
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import orjson
from attrs import define, field

from vmx_core.audit.record import AuditSink
from vmx_core.capacity.store import CapacityStore
from vmx_core.config.loader import load_config
from vmx_core.config.models import VmxConfig
from vmx_core.config.validate import validate
from vmx_core.errors import InvalidRequest, RequestError
from vmx_core.pipeline import RequestContext, run
from vmx_core.pipeline.count import count_tokens
from vmx_core.pipeline.resolve import authenticate
from vmx_core.pipeline.stream import CLIENT_CLOSED
from vmx_core.plugins import Plugins, collect
from vmx_core.reply import Completion, Reply, StreamingCompletion
from vmx_core.request import ClientRequest
from vmx_core.request_log import log_request
from vmx_core.routing.breaker import CircuitBreaker
from vmx_core.routing.health import ConnectionHealth
from vmx_core.routing.shared import SharedOutcomes
from vmx_core.runtime import Runtime
from vmx_core.security.credentials import Credentials
from vmx_core.telemetry import Telemetry, default_telemetry
from vmx_core.wire.formats import Format

Handler = Callable[[ClientRequest], Awaitable[Reply]]


@define
class Gateway:
    config: VmxConfig
    plugins: Plugins
    runtime: Runtime | None = None
    sinks: list[AuditSink] = field(factory=list)
    #: Upstream outcomes per connection; kept across reloads.
    health: ConnectionHealth = field(factory=ConnectionHealth)
    breaker: CircuitBreaker = field(factory=CircuitBreaker)
    #: The capacity store of ``storage.capacity``; kept across reloads.
    capacity_store: CapacityStore | None = None
    #: Spans and metrics; the global OpenTelemetry providers unless given.
    telemetry: Telemetry = field(factory=default_telemetry)
    #: Error rates and circuits shared with other processes through a shared capacity store.
    shared: SharedOutcomes | None = None
    _handler: Handler | None = None
    started: bool = False
    #: Runtimes replaced by a reload that still have requests in flight.
    _retired: set[Runtime] = field(factory=set)
    _closing: set[asyncio.Task[None]] = field(factory=set)
    #: Opened credential ciphers, kept across reloads (the KMS data-key cache lives there).
    _credentials: Credentials | None = None
    #: Serialises reloads: two changes arriving together are applied one after the other.
    _reload_lock: asyncio.Lock = field(factory=asyncio.Lock)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        plugins: Iterable[object] = (),
        environ: Mapping[str, str] | None = None,
        telemetry: Telemetry | None = None,
    ) -> Gateway:
        loaded = Plugins.load(plugins, environ=environ)
        config = load_config(path, environ=environ, providers=loaded.providers(), rule_functions=loaded.rule_functions())
        return cls(config, loaded, telemetry=telemetry or default_telemetry())

    @classmethod
    def from_config(
        cls, config: VmxConfig, *, plugins: Iterable[object] = (), entry_points: bool = True,
        telemetry: Telemetry | None = None,
    ) -> Gateway:
        loaded = Plugins.load(plugins, entry_points=entry_points)
        validate(config, loaded.providers(), loaded.rule_functions())
        return cls(config, loaded, telemetry=telemetry or default_telemetry())

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        if self.capacity_store is None:
            self.capacity_store = self.plugins.capacity_store(self.config.storage.capacity)
        if self.shared is None and not self.config.storage.capacity.startswith("memory:"):
            # Other processes use this store too: let them see the same error rates and circuits.
            self.shared = self.health.shared = self.breaker.shared = SharedOutcomes(self.capacity_store)
            await self.shared.start()
        self._watch_circuits(self.config)
        self.runtime = await self._build(self.config)
        self.sinks = collect(self.plugins.hook.vmx_register_audit_sinks(config=self.config))
        for sink in self.sinks:
            await sink.start()
        handler: Handler = self._handle
        for wrapper in reversed(collect(self.plugins.hook.vmx_completion_wrapper(gateway=self))):
            handler = _wrap(wrapper, handler)
        self._handler = handler
        for result in self.plugins.hook.vmx_startup(gateway=self):
            if inspect.isawaitable(result):
                await result
        self.started = True

    async def aclose(self) -> None:
        if not self.started:
            return
        self.started = False
        for result in self.plugins.hook.vmx_shutdown(gateway=self):
            if inspect.isawaitable(result):
                await result
        for sink in self.sinks:
            await sink.aclose()
        if self.runtime is not None:
            await self.runtime.aclose()
        if self._credentials is not None:
            await self._credentials.aclose()
        for rt in list(self._retired):
            await rt.aclose()
        self._retired.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self.shared is not None:
            await self.shared.aclose()
            self.shared = self.health.shared = self.breaker.shared = None
        if self.capacity_store is not None:
            await self.capacity_store.aclose()
            self.capacity_store = None

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def reload(self, config: VmxConfig) -> None:
        """Swap in a new config atomically; requests in flight finish on the old one, whose
        upstream connections are closed when its last request (or stream) finishes."""
        async with self._reload_lock:
            validate(config, self.plugins.providers(), self.plugins.rule_functions())
            new = await self._build(config)
            old, self.runtime, self.config = self.runtime, new, config
            self._watch_circuits(config)
        if old is not None:
            old.retired = True
            if old.in_flight == 0:
                await old.aclose()
            else:
                self._retired.add(old)

    @property
    def credentials(self) -> Credentials:
        """The credential ciphers (``vmx_register_credential_ciphers``), opened lazily."""
        if self._credentials is None:
            self._credentials = Credentials(self.plugins.credential_ciphers())
        return self._credentials

    async def _build(self, config: VmxConfig) -> Runtime:
        # Only the runtime sees plaintext credentials; self.config keeps the ciphertexts.
        plain = await self.credentials.decrypt_config(config)
        return Runtime.build(
            plain, self.plugins.providers(), self.plugins.rule_functions(), self.health, self.breaker,
            self.capacity_store,
        )

    def _watch_circuits(self, config: VmxConfig) -> None:
        """Have the shared breaker counters of every connection an environment with circuit
        breakers may call read back from the start, not from this process's first call."""
        if self.shared is None:
            return
        for ws, wcfg in config.workspaces.items():
            for env, ecfg in wcfg.environments.items():
                if any(r.circuit_breaker is not None for r in ecfg.resources.values()):
                    self.shared.watch((ws, env, conn) for conn in ecfg.connections)

    def _close_later(self, rt: Runtime) -> None:
        self._retired.discard(rt)
        task = asyncio.get_running_loop().create_task(rt.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- the low-level entry point (what vmx_server calls) --------------------------------------

    async def handle(self, request: ClientRequest) -> Reply:
        """Answer one request: a :class:`Completion` or a :class:`StreamingCompletion`.

        Raises :class:`RequestError` (with the response headers set on it) for every error a
        client should see."""
        if self._handler is None:
            raise RuntimeError("the gateway is not started: use `async with gateway:` or await gateway.start()")
        return await self._handler(request)

    async def _handle(self, request: ClientRequest) -> Reply:
        rt = self.runtime
        assert rt is not None
        ctx = RequestContext(request, runtime=rt, telemetry=self.telemetry)
        ctx.span = self.telemetry.start_request(ctx)
        rt.in_flight += 1
        try:
            # Current for the pipeline's spans; ended by _finish, which for a stream is later.
            with self.telemetry.current(ctx.span):
                return await run(rt, ctx, self._finish)
        except RequestError as err:
            ctx.status, ctx.error = err.status, err
            err.headers.update(ctx.headers())
            self._finish(ctx)
            raise
        except asyncio.CancelledError:
            ctx.status = CLIENT_CLOSED
            self._finish(ctx)
            raise

    async def count_tokens(self, request: ClientRequest) -> Completion:
        """Anthropic's ``messages/count_tokens``: ``{"input_tokens": N}``, counted by the
        provider where it can, estimated otherwise (header ``x-vmx-token-count``)."""
        rt = self.runtime
        if rt is None:
            raise RuntimeError("the gateway is not started: use `async with gateway:` or await gateway.start()")
        ctx = RequestContext(request, runtime=rt)
        rt.in_flight += 1
        try:
            count, how = await count_tokens(rt, ctx)
        except RequestError as err:
            err.headers.update(ctx.headers())
            raise
        finally:
            rt.in_flight -= 1
            if rt.retired and rt.in_flight == 0:
                self._close_later(rt)
        headers = {**ctx.headers(), "x-vmx-token-count": how}
        return Completion(status=200, headers=headers, body=orjson.dumps({"input_tokens": count}))

    def reject(self, request: ClientRequest, err: RequestError) -> RequestError:
        """Record a request the server refused before the pipeline ran (bad key, unknown
        tenant, body too large): it still gets a request id, a log line and an audit record."""
        ctx = RequestContext(request, telemetry=self.telemetry)
        ctx.span = self.telemetry.start_request(ctx)
        ctx.status, ctx.error = err.status, err
        err.headers.update(ctx.headers())
        self._finish(ctx)
        return err

    def authenticate(self, api_key: str | None, workspace: str, environment: str) -> None:
        """Check a key before reading a body (so unauthenticated callers learn nothing)."""
        assert self.runtime is not None
        authenticate(self.runtime, api_key, workspace, environment)

    def _finish(self, ctx: RequestContext) -> None:
        if ctx.finished:
            return
        ctx.finished = True
        rt = ctx.runtime
        if rt is not None:
            rt.in_flight -= 1
            if rt.retired and rt.in_flight == 0:
                self._close_later(rt)
        for attempt in ctx.attempts:
            self.health.record(ctx.request.workspace, ctx.request.environment, attempt)
        if self.sinks:
            # Timed for the overhead histogram; it runs after the answer's headers were
            # built, so x-vmx-overhead-ms cannot include it.
            started = time.perf_counter()
            record = ctx.audit_record()
            for sink in self.sinks:
                sink.enqueue(record)
            ctx.timings.mark("audit_enqueue", started)
        self.telemetry.finish(ctx)
        log_request(ctx.log_fields)

    # -- convenience API for embedding ---------------------------------------------------------

    async def chat_completions(
        self, workspace: str, environment: str, body: Mapping[str, Any], *, api_key: str,
        headers: Mapping[str, str] | None = None,
    ) -> Completion:
        return await self._complete(Format.CHAT_COMPLETIONS, workspace, environment, body, api_key, headers)

    async def responses(
        self, workspace: str, environment: str, body: Mapping[str, Any], *, api_key: str,
        headers: Mapping[str, str] | None = None,
    ) -> Completion:
        return await self._complete(Format.RESPONSES, workspace, environment, body, api_key, headers)

    def stream_chat_completions(
        self, workspace: str, environment: str, body: Mapping[str, Any], *, api_key: str,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Any]:
        """Yield each chunk as a dict; an in-band stream error is raised as ``UpstreamFailed``."""
        return self._stream(Format.CHAT_COMPLETIONS, workspace, environment, body, api_key, headers)

    def stream_responses(
        self, workspace: str, environment: str, body: Mapping[str, Any], *, api_key: str,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Any]:
        return self._stream(Format.RESPONSES, workspace, environment, body, api_key, headers)

    async def _complete(
        self, fmt: Format, ws: str, env: str, body: Mapping[str, Any], api_key: str, headers: Mapping[str, str] | None
    ) -> Completion:
        if body.get("stream"):
            raise InvalidRequest("stream: use the stream_* method for streaming requests", param="stream")
        reply = await self.handle(ClientRequest(fmt, ws, env, body, api_key, _lower(headers)))
        assert isinstance(reply, Completion)
        return reply

    async def _stream(
        self, fmt: Format, ws: str, env: str, body: Mapping[str, Any], api_key: str, headers: Mapping[str, str] | None
    ) -> AsyncIterator[Any]:
        from vmx_core.errors import UpstreamFailed

        reply = await self.handle(ClientRequest(fmt, ws, env, {**body, "stream": True}, api_key, _lower(headers)))
        assert isinstance(reply, StreamingCompletion)
        try:
            async for event in reply.events():
                if isinstance(event, dict) and (
                    (fmt is Format.CHAT_COMPLETIONS and "error" in event and "choices" not in event)
                    or event.get("type") == "error"
                ):
                    err = event.get("error") if fmt is Format.CHAT_COMPLETIONS else event
                    raise UpstreamFailed(str((err or {}).get("message", "stream failed")))
                yield event
        finally:
            await reply.aclose()

    def models(self, workspace: str, environment: str, *, api_key: str) -> list[str]:
        """The resources this key may call, sorted."""
        assert self.runtime is not None
        key = authenticate(self.runtime, api_key, workspace, environment)
        tenant = self.runtime.tenants[(workspace, environment)]
        return sorted(name for name in tenant.resources if key.may_call(name))


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items()}


def _wrap(wrapper: Callable[[ClientRequest, Handler], Awaitable[Reply]], inner: Handler) -> Handler:
    async def handler(request: ClientRequest) -> Reply:
        return await wrapper(request, inner)

    return handler
