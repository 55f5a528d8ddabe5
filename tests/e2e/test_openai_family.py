"""groq, perplexity and gemini: OpenAI's Chat Completions shape at their own endpoints, with
provider extras passing through untouched in both directions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import KEY, KEY_SHA
from tests.fakes.openai_upstream import FakeOpenAI
from vmx_core.plugins import Plugins
from vmx_core.providers import ConnectionSpec
from vmx_core.secrets import Secret

# Each provider's real path prefix, served by a fake on loopback through options.base_url.
PREFIXES = {"groq": "/openai/v1", "perplexity": "", "gemini": "/v1beta/openai"}


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, FakeOpenAI]]:
    started = {name: FakeOpenAI(prefix=prefix) for name, prefix in PREFIXES.items()}
    for fake in started.values():
        await fake.start()
    yield started
    for fake in started.values():
        await fake.stop()


def family_config(fakes: dict[str, FakeOpenAI]) -> dict[str, Any]:
    connections = {
        name: {"provider": name, "credentials": {"api_key": f"key-{name}"}, "options": {"base_url": fake.base_url}}
        for name, fake in fakes.items()
    }
    resources = {name: {"model": {"connection": name, "model": f"{name}-model"}} for name in fakes}
    env = {"connections": connections, "resources": resources,
           "api_keys": {"app": {"key_sha256": KEY_SHA, "resources": ["*"]}}}
    return {"workspaces": {"acme": {"environments": {"prod": env}}}}


@pytest.mark.parametrize("provider", sorted(PREFIXES))
async def test_chat_reaches_each_provider_at_its_path_with_its_key(
    provider: str, fakes: dict[str, FakeOpenAI], vmx_factory: Any
) -> None:
    """Each family member posts to BASE/chat/completions with `Bearer <its key>`, streamed or not."""
    vmx = await vmx_factory(family_config(fakes))
    client = openai.AsyncOpenAI(base_url=vmx.base_url(), api_key=KEY, max_retries=0)
    whole = await client.chat.completions.create(model=provider, messages=[{"role": "user", "content": "hi"}])
    stream = await client.chat.completions.create(model=provider, messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await client.close()
    assert whole.choices[0].message.content == "echo: hi" and text.strip() == "echo: hi"
    seen = fakes[provider].requests
    assert [r["path"] for r in seen] == [PREFIXES[provider] + "/chat/completions"] * 2
    assert {r["headers"]["Authorization"] for r in seen} == {f"Bearer key-{provider}"}
    assert {r["body"]["model"] for r in seen} == {f"{provider}-model"}


async def test_perplexity_search_options_and_citations_pass_through(fakes: dict[str, FakeOpenAI], vmx_factory: Any) -> None:
    """Perplexity's search options reach it verbatim and its citations come back, whole and streamed."""
    vmx = await vmx_factory(family_config(fakes))
    client = openai.AsyncOpenAI(base_url=vmx.base_url(), api_key=KEY, max_retries=0)
    extra = {"search_domain_filter": ["example.org"], "search_recency_filter": "week", "return_images": False}
    whole = await client.chat.completions.create(
        model="perplexity", messages=[{"role": "user", "content": "news?"}], extra_body=extra
    )
    stream = await client.chat.completions.create(
        model="perplexity", messages=[{"role": "user", "content": "news?"}], extra_body=extra, stream=True
    )
    chunks = [c async for c in stream]
    await client.close()
    assert whole.model_extra is not None and whole.model_extra["citations"] == ["https://example.org/page"]
    assert whole.model_extra["search_results"][0]["url"] == "https://example.org/page"
    assert all((c.model_extra or {}).get("citations") == ["https://example.org/page"] for c in chunks)
    for request in fakes["perplexity"].requests:
        for key, value in extra.items():
            assert request["body"][key] == value


async def test_responses_endpoint_on_a_chat_only_provider_is_converted(fakes: dict[str, FakeOpenAI], vmx_factory: Any) -> None:
    """A chat-only provider behind /responses gets a Chat Completions body and the client a Response."""
    vmx = await vmx_factory(family_config(fakes))
    client = openai.AsyncOpenAI(base_url=vmx.base_url(), api_key=KEY, max_retries=0)
    response = await client.responses.create(model="groq", input="hi", instructions="be brief")
    await client.close()
    assert response.output_text == "echo: hi"
    sent = fakes["groq"].requests[0]
    assert sent["path"].endswith("/chat/completions")
    assert sent["body"]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


async def test_unconvertible_feature_is_a_400_naming_it(fakes: dict[str, FakeOpenAI], vmx_factory: Any) -> None:
    """A Responses built-in tool cannot reach a chat-only provider: 400 naming the field, nothing sent."""
    vmx = await vmx_factory(family_config(fakes))
    client = openai.AsyncOpenAI(base_url=vmx.base_url(), api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError, match=r"tools\[0\]\.type=web_search"):
        await client.responses.create(model="groq", input="hi", tools=[{"type": "web_search"}])
    await client.close()
    assert fakes["groq"].requests == []


@pytest.mark.parametrize(
    ("provider", "base_url"),
    [
        ("openai", "https://api.openai.com/v1"),
        ("groq", "https://api.groq.com/openai/v1"),
        ("perplexity", "https://api.perplexity.ai"),
        ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai"),
    ],
)
def test_default_endpoints(provider: str, base_url: str) -> None:
    """Without options.base_url each provider talks to its public OpenAI-compatible endpoint."""
    plugin = Plugins.load().providers()[provider]
    spec = ConnectionSpec("w", "e", "c", provider, {"api_key": Secret("k")}, plugin.options_type())
    client = plugin.connect(spec)
    assert client.http.base_url == base_url  # type: ignore[attr-defined]
