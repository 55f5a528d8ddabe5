"""What plugin authors and embedders test with: a scriptable in-process provider and a
one-call gateway around it.

::

    from vmx_core.testing import FakeProvider, make_test_gateway

    fake = FakeProvider()
    fake.queue_error(UpstreamHTTPError(503, "down"))      # first call fails
    async with make_test_gateway(fake, fallback=True) as gw:
        reply = await gw.chat_completions("test", "test", {"model": "chat", "messages": [...]},
                                          api_key=TEST_KEY)
    assert len(fake.calls) == 2
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import orjson
from attrs import define, field, frozen

from vmx_core.config.loader import config_from_dict
from vmx_core.errors import ProviderError
from vmx_core.gateway import Gateway
from vmx_core.plugins import Plugins, hookimpl
from vmx_core.providers import ConnectionSpec, UpstreamCall, UpstreamReply
from vmx_core.security.apikeys import hash_key
from vmx_core.wire import sse
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEEvent

TEST_KEY = "vmx_test_0000000000000000000000000000000000000000"


@frozen
class FakeOptions:
    reply: str = "fake answer"


@define
class FakeProvider:
    """A provider whose answers are scripted: queued errors are raised in order, then every
    call gets a chat-completion (or SSE stream) answering ``options.reply``."""

    name: str = "fake"
    formats: frozenset[Format] = frozenset({Format.CHAT_COMPLETIONS})
    options_type: type[Any] = FakeOptions
    stream_usage: bool = True
    calls: list[UpstreamCall] = field(factory=list)
    script: deque[ProviderError] = field(factory=deque)

    def queue_error(self, *errors: ProviderError) -> None:
        self.script.extend(errors)

    def connect(self, spec: ConnectionSpec) -> _FakeClient:
        return _FakeClient(self, spec.options)

    @hookimpl
    def vmx_register_providers(self) -> list[FakeProvider]:
        return [self]


@define
class _FakeClient:
    provider: FakeProvider
    options: FakeOptions

    def _next(self, call: UpstreamCall) -> None:
        self.provider.calls.append(call)
        if self.provider.script:
            raise self.provider.script.popleft()

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        self._next(call)
        body = _chat_completion(call.model, self.options.reply)
        raw = orjson.dumps(body)
        return UpstreamReply(200, raw, body)

    async def open_stream(self, call: UpstreamCall) -> _FakeStream:
        self._next(call)
        return _FakeStream(call, self.options.reply)

    async def aclose(self) -> None:
        return None


def _chat_completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())},
    }


@define
class _FakeStream:
    call: UpstreamCall
    text: str
    headers: Mapping[str, str] = field(factory=dict)

    def __aiter__(self) -> AsyncIterator[SSEEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[SSEEvent]:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": self.call.model}
        for word in self.text.split(" "):
            data = orjson.dumps({**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
            yield SSEEvent(None, data.decode(), sse.encode(data))
        yield SSEEvent(None, "[DONE]", sse.encode(b"[DONE]"))

    async def aclose(self) -> None:
        return None


def make_test_gateway(
    provider: FakeProvider | None = None,
    *,
    fallback: bool = False,
    resource: Mapping[str, Any] | None = None,
    plugins: Iterable[object] = (),
    key: str = TEST_KEY,
    connections: Iterable[str] = ("fake",),
    audit: str = "none",
) -> Gateway:
    """A gateway with workspace/environment ``test``/``test``, a connection ``fake`` and a
    resource ``chat`` on it (with ``fallback`` to the same connection if asked), callable with
    ``key``.  ``connections`` names more connections, all on ``provider``.  Entry-point
    plugins are not loaded: only ``provider`` and ``plugins``.  The built-in audit sink is
    off unless ``audit`` names a ``storage.audit`` URI (e.g. ``sqlite:///:memory:``)."""
    provider = provider or FakeProvider()
    res: dict[str, Any] = dict(resource or {"model": {"connection": "fake", "model": "fake-1"}})
    if fallback:
        res.setdefault("fallback", [{"connection": "fake", "model": "fake-2"}])
    raw = {
        "storage": {"audit": audit},
        "workspaces": {
            "test": {
                "environments": {
                    "test": {
                        "connections": {name: {"provider": provider.name} for name in connections},
                        "resources": {"chat": res},
                        "api_keys": {"test": {"key_sha256": hash_key(key), "resources": ["*"]}},
                    }
                }
            }
        }
    }
    # Load the plugins first: the config's rules may call functions only a plugin provides.
    loaded = Plugins.load([provider, *plugins], entry_points=False)
    config = config_from_dict(
        raw, environ={}, providers=loaded.providers(), rule_functions=loaded.rule_functions()
    )
    return Gateway(config, loaded)
