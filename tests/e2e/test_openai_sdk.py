"""The official ``openai`` SDK, sync and async, against a real ``vmx serve`` process.

Chat Completions and Responses, streaming and not, with ``extra_body={"vmx": ...}``, in front of
a fake upstream that records what it received; every answer the SDK gets is checked against the
schemas of OpenAI's official OpenAPI spec (``tests/e2e/spec.py``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import KEY
from tests.e2e import spec
from tests.e2e.conftest import UPSTREAM_SECRET, e2e_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess

#: The model reference's ``default_args``: the lowest layer of the upstream body.
DEFAULTS = {"temperature": 0.1, "top_p": 0.5, "user": "d"}
#: What the client sends besides the messages: beats DEFAULTS, loses to PROVIDER_ARGS.
CLIENT_ARGS = {"temperature": 0.7, "seed": 1}
PROVIDER_ARGS = {"top_p": 0.9, "seed": 7}
#: The upstream body once merged: ``default_args < client body < providerArgs``.
MERGED = {"temperature": 0.7, "top_p": 0.9, "seed": 7, "user": "d"}
VMX = {"correlationId": "corr-1", "metadata": {"team": "search"}, "providerArgs": PROVIDER_ARGS}
NARROW_KEY = "vmx_narrow_key_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
PING = [{"role": "user", "content": "ping"}]


def _config(upstream: FakeOpenAI) -> dict[str, Any]:
    config = e2e_config(
        upstream,
        tuned={"model": {"connection": "up", "model": "gpt-4.1-nano", "default_args": DEFAULTS}},
        local={"model": {"connection": "m", "model": "mock-1"}},
    )
    prod = config["workspaces"]["acme"]["environments"]["prod"]
    prod["api_keys"]["narrow"] = {"key_sha256": hashlib.sha256(NARROW_KEY.encode()).hexdigest(), "resources": ["local"]}
    return config


class Sdk:
    """The same calls through ``openai.OpenAI`` (run in a worker thread, since it blocks) or
    ``openai.AsyncOpenAI``; ``path`` names the SDK method, e.g. ``"chat.completions.create"``."""

    def __init__(self, kind: str, base_url: str, api_key: str = KEY) -> None:
        self.kind, self.base_url = kind, base_url
        cls = openai.AsyncOpenAI if kind == "async" else openai.OpenAI
        self.client: Any = cls(base_url=base_url, api_key=api_key, max_retries=0)
        self.others: list[Sdk] = []

    def with_key(self, api_key: str) -> Sdk:
        other = Sdk(self.kind, self.base_url, api_key)
        self.others.append(other)
        return other

    async def call(self, path: str, **kwargs: Any) -> Any:
        method = functools.reduce(getattr, path.split("."), self.client)
        if self.kind == "async":
            return await method(**kwargs)
        return await asyncio.to_thread(functools.partial(method, **kwargs))

    async def collect(self, stream: Any) -> list[Any]:
        """Every item of an SDK stream, as the JSON the SDK received (``to_dict``)."""
        if self.kind == "async":
            items = [item async for item in stream]
        else:
            items = await asyncio.to_thread(list, stream)
        return [item.to_dict(mode="json") for item in items]

    async def responses_stream_helper(self, **kwargs: Any) -> tuple[list[str], Any]:
        """``client.responses.stream(...)``: the event types seen and ``get_final_response()``."""
        if self.kind == "async":
            async with self.client.responses.stream(**kwargs) as stream:
                types = [event.type async for event in stream]
                return types, await stream.get_final_response()

        def run() -> tuple[list[str], Any]:
            with self.client.responses.stream(**kwargs) as stream:
                return [event.type for event in stream], stream.get_final_response()

        return await asyncio.to_thread(run)

    async def aclose(self) -> None:
        for sdk in [self, *self.others]:
            if sdk.kind == "async":
                await sdk.client.close()
            else:
                sdk.client.close()


@pytest.fixture
async def gw(upstream: FakeOpenAI, vmx_factory: Any) -> VmxProcess:
    """A gateway with ``tuned`` (fake upstream, with default_args) and ``local`` (mock)."""
    proc: VmxProcess = await vmx_factory(_config(upstream))
    return proc


@pytest.fixture(params=["sync", "async"])
async def sdk(request: pytest.FixtureRequest, gw: VmxProcess) -> AsyncIterator[Sdk]:
    client = Sdk(request.param, gw.base_url())
    yield client
    await client.aclose()


def assert_forwarded(upstream: FakeOpenAI, endpoint: str, *, stream: bool) -> dict[str, Any]:
    """The last upstream request: provider model id, connection key, no ``vmx``, merged args."""
    seen = upstream.requests[-1]
    assert seen["path"] == f"/v1/{endpoint}"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert KEY not in repr(seen), "the client's vmx key must never reach the provider"
    body: dict[str, Any] = seen["body"]
    assert "vmx" not in body
    assert body["model"] == "gpt-4.1-nano"
    assert {k: body.get(k) for k in MERGED} == MERGED
    assert bool(body.get("stream")) is stream
    return body


# -- Chat Completions ----------------------------------------------------------------------


async def test_chat(sdk: Sdk, upstream: FakeOpenAI) -> None:
    """A chat completion reaches upstream rewritten and merged, and its answer matches the spec."""
    completion = await sdk.call("chat.completions.create", model="tuned", messages=PING,
                                extra_body={**CLIENT_ARGS, "vmx": VMX})
    spec.validate(completion.to_dict(mode="json"), "CreateChatCompletionResponse")
    assert completion.choices[0].message.content == "echo: ping"
    assert completion.usage.prompt_tokens == 11
    assert_forwarded(upstream, "chat/completions", stream=False)


async def test_chat_stream(sdk: Sdk, upstream: FakeOpenAI) -> None:
    """A streamed chat completion is forwarded merged; every chunk the SDK gets matches the spec."""
    stream = await sdk.call("chat.completions.create", model="tuned", messages=PING, stream=True,
                            extra_body={**CLIENT_ARGS, "vmx": VMX})
    chunks = await sdk.collect(stream)
    for chunk in chunks:
        spec.validate(chunk, "CreateChatCompletionStreamResponse")
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "echo: ping "
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert_forwarded(upstream, "chat/completions", stream=True)


async def test_stream_usage_asked_upstream_but_hidden_from_client(sdk: Sdk, upstream: FakeOpenAI) -> None:
    """Without ``include_usage`` the gateway still asks upstream for usage, and drops that chunk."""
    stream = await sdk.call("chat.completions.create", model="tuned", messages=PING, stream=True)
    chunks = await sdk.collect(stream)
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert chunks and all(c["choices"] and c.get("usage") is None for c in chunks)


async def test_stream_usage_delivered_when_client_asks(sdk: Sdk, upstream: FakeOpenAI) -> None:
    """With ``stream_options.include_usage`` the client receives the usage-only final chunk."""
    stream = await sdk.call("chat.completions.create", model="tuned", messages=PING, stream=True,
                            stream_options={"include_usage": True})
    chunks = await sdk.collect(stream)
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    last = chunks[-1]
    spec.validate(last, "CreateChatCompletionStreamResponse")
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens"] == 11 and last["usage"]["total_tokens"] == 13
    assert all(c["choices"] for c in chunks[:-1])


# -- Responses -----------------------------------------------------------------------------

RESPONSE_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
                   "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                   "response.output_text.done", "response.content_part.done", "response.output_item.done",
                   "response.completed"]


async def test_responses(sdk: Sdk, upstream: FakeOpenAI) -> None:
    """A Responses call reaches upstream rewritten and merged, and the SDK parses the answer."""
    response = await sdk.call("responses.create", model="tuned", input="ping", temperature=0.7,
                              extra_body={"seed": 1, "vmx": VMX})
    assert response.output_text == "echo: ping"
    assert response.status == "completed" and response.usage.input_tokens == 9
    spec.validate(response.to_dict(mode="json"), "Response")
    assert_forwarded(upstream, "responses", stream=False)


async def test_responses_stream(sdk: Sdk, upstream: FakeOpenAI) -> None:
    """A streamed Responses call relays every typed event in order and is forwarded merged."""
    stream = await sdk.call("responses.create", model="tuned", input="ping", temperature=0.7, stream=True,
                            extra_body={"seed": 1, "vmx": VMX})
    events = await sdk.collect(stream)
    assert [e["type"] for e in events] == RESPONSE_EVENTS
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "echo: ping"
    for event in events:
        spec.validate_response_event(event)
    assert_forwarded(upstream, "responses", stream=True)


async def test_responses_stream_helper(sdk: Sdk, upstream: FakeOpenAI) -> None:
    """``client.responses.stream()`` assembles the final response from the relayed events."""
    types, final = await sdk.responses_stream_helper(model="tuned", input="ping", temperature=0.7,
                                                     extra_body={"seed": 1, "vmx": VMX})
    assert types == RESPONSE_EVENTS
    assert final.output_text == "echo: ping"
    assert_forwarded(upstream, "responses", stream=True)


# -- the mock provider's own shapes --------------------------------------------------------


async def test_mock_chat_matches_spec(sdk: Sdk) -> None:
    """The mock provider's chat completion and chunks (usage chunk included) match the spec."""
    completion = await sdk.call("chat.completions.create", model="local", messages=PING)
    spec.validate(completion.to_dict(mode="json"), "CreateChatCompletionResponse")
    assert completion.choices[0].message.content == "Mock answer to: ping"
    stream = await sdk.call("chat.completions.create", model="local", messages=PING, stream=True,
                            stream_options={"include_usage": True})
    chunks = await sdk.collect(stream)
    for chunk in chunks:
        spec.validate(chunk, "CreateChatCompletionStreamResponse")
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1]) == "Mock answer to: ping"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


async def test_mock_responses_match_spec(sdk: Sdk) -> None:
    """The mock provider's Response object and every Responses stream event match the spec."""
    response = await sdk.call("responses.create", model="local", input="ping")
    spec.validate(response.to_dict(mode="json"), "Response")
    assert response.output_text == "Mock answer to: ping"
    stream = await sdk.call("responses.create", model="local", input="ping", stream=True)
    events = await sdk.collect(stream)
    schemas = [spec.validate_response_event(event) for event in events]
    assert schemas[0] == "ResponseCreatedEvent" and schemas[-1] == "ResponseCompletedEvent"
    assert "ResponseTextDeltaEvent" in schemas
    spec.validate(events[-1]["response"], "Response")
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Mock answer to: ping"


# -- response headers (DESIGN §5) ----------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_response_headers(sdk: Sdk, stream: bool) -> None:
    """Completion answers carry the request id, the envelope echoes and where they were served."""
    raw = await sdk.call("chat.completions.with_raw_response.create", model="tuned", messages=PING,
                         stream=stream, extra_body={"vmx": VMX})
    h = raw.headers
    parsed = raw.parse()
    if stream:
        assert len(await sdk.collect(parsed)) > 1
    else:
        assert parsed.choices[0].message.content == "echo: ping"
    assert uuid.UUID(h["x-vmx-request-id"])
    assert h["x-vmx-correlation-id"] == "corr-1"
    assert h["x-vmx-metadata-team"] == "search"
    assert (h["x-vmx-resource"], h["x-vmx-provider"], h["x-vmx-connection"]) == ("tuned", "openai", "up")
    assert h["x-vmx-model"] == "gpt-4.1-nano"
    assert h["x-vmx-attempts"] == "1"
    assert re.fullmatch(r"\d+(\.\d+)?", h["x-vmx-overhead-ms"]) and float(h["x-vmx-overhead-ms"]) >= 0
    assert "x-vmx-routing-rule" not in h


async def test_request_ids_are_unique(sdk: Sdk) -> None:
    """Each request gets its own ``x-vmx-request-id``."""
    ids = set()
    for _ in range(3):
        raw = await sdk.call("chat.completions.with_raw_response.create", model="chat", messages=PING)
        ids.add(raw.headers["x-vmx-request-id"])
    assert len(ids) == 3


async def test_envelope_header_fallbacks(sdk: Sdk) -> None:
    """``x-vmx-correlation-id`` / ``x-vmx-metadata-*`` headers are used when the body has none."""
    headers = {"x-vmx-correlation-id": "from-header", "x-vmx-metadata-team": "h", "x-vmx-metadata-tier": "gold"}
    raw = await sdk.call("chat.completions.with_raw_response.create", model="chat", messages=PING,
                         extra_headers=headers)
    assert raw.headers["x-vmx-correlation-id"] == "from-header"
    assert (raw.headers["x-vmx-metadata-team"], raw.headers["x-vmx-metadata-tier"]) == ("h", "gold")


async def test_envelope_body_wins_over_headers(sdk: Sdk) -> None:
    """When both carry a value, the ``vmx`` body field wins over the header fallback."""
    headers = {"x-vmx-correlation-id": "from-header", "x-vmx-metadata-team": "h", "x-vmx-metadata-tier": "gold"}
    raw = await sdk.call("chat.completions.with_raw_response.create", model="chat", messages=PING,
                         extra_headers=headers, extra_body={"vmx": VMX})
    assert raw.headers["x-vmx-correlation-id"] == "corr-1"
    assert (raw.headers["x-vmx-metadata-team"], raw.headers["x-vmx-metadata-tier"]) == ("search", "gold")


# -- GET /models ---------------------------------------------------------------------------


async def test_models_lists_callable_resources(sdk: Sdk) -> None:
    """``client.models.list()`` lists exactly the resources the calling key may use."""
    page = await sdk.call("models.list")
    assert sorted(m.id for m in page.data) == ["chat", "local", "tuned"]
    spec.validate(page.to_dict(mode="json"), "ListModelsResponse")
    narrow = await sdk.with_key(NARROW_KEY).call("models.list")
    assert [m.id for m in narrow.data] == ["local"]
