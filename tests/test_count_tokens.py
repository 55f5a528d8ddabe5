"""``Gateway.count_tokens`` in process: a provider's own counter is asked in the provider's
shape, whatever it speaks, and the estimate answers whenever the provider cannot count."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from attrs import define, field

from vmx_core.errors import CountNotSupported, ProviderError, UpstreamHTTPError, UpstreamRejected
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
