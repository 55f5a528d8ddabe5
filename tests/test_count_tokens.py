"""``Gateway.count_tokens`` in process: a provider's own counter is asked in the provider's
shape, whatever it speaks, and the estimate answers whenever the provider cannot count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from attrs import define, field
from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.errors import CountNotSupported, ProviderError, UpstreamHTTPError, UpstreamRejected
from vmx_core.pipeline import count as count_stage
from vmx_core.providers import ConnectionSpec, UpstreamCall
from vmx_core.request import ClientRequest
from vmx_core.testing import TEST_KEY, FakeProvider, _FakeClient, make_test_gateway
from vmx_core.tokens import estimate_request
from vmx_core.wire.formats import Format

BODY = {"model": "chat", "system": "be brief", "messages": [{"role": "user", "content": "hi"}]}


@define
class CountingProvider(FakeProvider):
    """The fake Chat Completions provider, with a counter that answers 42 or a scripted error."""

    counted: list[UpstreamCall] = field(factory=list)
    count_errors: list[ProviderError] = field(factory=list)

    def connect(self, spec: ConnectionSpec) -> _CountingClient:
        return _CountingClient(self, spec.options)


@define
class _CountingClient(_FakeClient):
    async def count_tokens(self, call: UpstreamCall) -> int:
        provider: Any = self.provider
        provider.counted.append(call)
        if provider.count_errors:
            raise provider.count_errors.pop(0)
        return 42


async def count(provider: FakeProvider, body: dict[str, Any] = BODY) -> tuple[int, str]:
    async with make_test_gateway(provider) as gw:
        reply = await gw.count_tokens(ClientRequest(Format.ANTHROPIC, "test", "test", body, api_key=TEST_KEY))
    return int(orjson.loads(reply.body)["input_tokens"]), reply.headers["x-vmx-token-count"]


async def test_a_counter_gets_the_body_converted_to_its_own_shape() -> None:
    """A Chat Completions provider's counter is sent the Anthropic body as Chat, with its
    model id, and its number is the answer."""
    provider = CountingProvider()
    assert await count(provider) == (42, "provider")
    call = provider.counted[0]
    assert (call.format, call.model, call.dialect) == (Format.CHAT_COMPLETIONS, "fake-1", None)
    assert call.body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


async def test_a_provider_without_a_counter_is_estimated() -> None:
    """No count_tokens method: the gateway's estimate, and no upstream call."""
    provider = FakeProvider()
    assert await count(provider) == (estimate_request(BODY), "estimate")
    assert provider.calls == []


@pytest.mark.parametrize(
    "error",
    [CountNotSupported("The provided model doesn't support counting tokens."), UpstreamHTTPError(503, "down")],
    ids=["not-supported", "upstream-down"],
)
async def test_a_counter_that_cannot_count_gives_the_estimate(error: ProviderError) -> None:
    """A counter saying it cannot count this, or an upstream that is down, gives the estimate."""
    provider = CountingProvider(count_errors=[error])
    assert await count(provider) == (estimate_request(BODY), "estimate")


async def test_a_refused_body_is_the_clients_error() -> None:
    """A 4xx on the body itself is passed on with the upstream's status."""
    provider = CountingProvider(count_errors=[UpstreamHTTPError(422, "messages: bad")])
    with pytest.raises(UpstreamRejected, match="messages: bad") as info:
        await count(provider)
    assert info.value.status == 422


async def test_a_request_the_shape_cannot_carry_is_estimated() -> None:
    """A feature the provider's shape cannot carry (top_k for Chat) is not sent: estimated."""
    provider = CountingProvider()
    body = {**BODY, "top_k": 5}
    assert await count(provider, body) == (estimate_request(body), "estimate")
    assert provider.counted == []


async def counts_in_one_gateway(provider: FakeProvider, n: int, between: Callable[[], None] = lambda: None) -> list[str]:
    """``n`` counts on one gateway; ``between`` runs after each."""
    how = []
    async with make_test_gateway(provider) as gw:
        for _ in range(n):
            reply = await gw.count_tokens(ClientRequest(Format.ANTHROPIC, "test", "test", BODY, api_key=TEST_KEY))
            how.append(reply.headers["x-vmx-token-count"])
            between()
    return how


async def test_a_model_that_cannot_count_is_not_asked_again_until_the_memory_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a model-wide "cannot count", the model is estimated without an upstream call
    for UNSUPPORTED_TTL seconds, then asked again."""
    now = [1000.0]
    monkeypatch.setattr(count_stage, "clock", lambda: now[0])
    provider = CountingProvider(count_errors=[CountNotSupported("The provided model doesn't support counting tokens.", model_wide=True)])

    def tick() -> None:
        now[0] += count_stage.UNSUPPORTED_TTL / 3 + 1

    # asked (cannot), then remembered twice (TTL/3 + 1 apart), then expired: asked again (42).
    assert await counts_in_one_gateway(provider, 4, tick) == ["estimate", "estimate", "estimate", "provider"]
    assert len(provider.counted) == 2


async def test_an_input_the_counter_refuses_does_not_stop_counting_for_the_model() -> None:
    """A "cannot count" about one request's input (not model-wide) is not remembered."""
    provider = CountingProvider(count_errors=[CountNotSupported("documents are not supported for token counting")])
    assert await counts_in_one_gateway(provider, 2) == ["estimate", "provider"]
    assert len(provider.counted) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, count_stage.UNSUPPORTED_TTL))))
def test_the_memory_of_models_that_cannot_count_stays_bounded(steps: list[tuple[int, float]]) -> None:
    """Whatever models clients name and whenever: at most MAX_UNSUPPORTED entries, and a
    model is remembered whenever there is room or an expired entry to make room."""
    memory: dict[tuple[str, str, str, str], float] = {}
    now = 0.0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(count_stage, "MAX_UNSUPPORTED", 3)
        mp.setattr(count_stage, "clock", lambda: now)
        for model, advance in steps:
            now += advance
            key = ("w", "e", "c", f"m{model}")
            room = len(memory) < 3 or any(until <= now for until in memory.values())
            count_stage._remember(memory, key)
            assert len(memory) <= 3
            if room:
                assert memory[key] == now + count_stage.UNSUPPORTED_TTL
