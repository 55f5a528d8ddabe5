"""Streams fail over invisibly until their first content frame (DESIGN §9)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import KEY
from tests.e2e.conftest import e2e_config
from tests.fakes.openai_upstream import FakeOpenAI

MESSAGES: Any = [{"role": "user", "content": "one two three"}]


def with_fallback(primary: str) -> dict[str, Any]:
    return {
        "model": {"connection": "up", "model": primary},
        "fallback": [{"connection": "up", "model": "gpt-4o-mini"}],
        "stream_idle_timeout_ms": 400,
    }


@pytest.mark.parametrize("primary", ["truncate-early", "stall-early", "error-first", "status-503", "close"])
async def test_chat_stream_fails_over_before_the_first_content(primary: str, upstream: FakeOpenAI, vmx_factory: Any) -> None:
    """A leg failing before content is replaced by the next one; the client sees one clean stream."""
    vmx = await vmx_factory(e2e_config(upstream, chat=with_fallback(primary)))
    client = openai.AsyncOpenAI(base_url=vmx.base_url(), api_key=KEY, max_retries=0)
    response = await client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES, stream=True)
    chunks = [c async for c in response.parse()]
    await client.close()
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert roles == ["assistant"]  # the failed leg's role frame was held back, not duplicated
    assert text.strip() == "echo: one two three"
    assert response.headers["x-vmx-attempts"] == "2"
    assert [r["body"]["model"] for r in upstream.requests] == [primary, "gpt-4o-mini"]


@pytest.mark.parametrize("primary", ["truncate-early", "error-first"])
async def test_responses_stream_fails_over_before_the_first_content(primary: str, upstream: FakeOpenAI, vmx_factory: Any) -> None:
    """Responses lifecycle events of a failed leg never reach the client."""
    vmx = await vmx_factory(e2e_config(upstream, chat=with_fallback(primary)))
    client = openai.AsyncOpenAI(base_url=vmx.base_url(), api_key=KEY, max_retries=0)
    stream = await client.responses.create(model="chat", input="one two three", stream=True)
    events = [e async for e in stream]
    await client.close()
    kinds = [e.type for e in events]
    assert kinds.count("response.created") == 1
    assert kinds[-1] == "response.completed"
    assert [r["body"]["model"] for r in upstream.requests] == [primary, "gpt-4o-mini"]


async def test_stream_that_fails_before_content_on_every_leg_is_a_502(upstream: FakeOpenAI, vmx_factory: Any) -> None:
    """When no leg reaches content, the client gets a plain 502, not a broken stream."""
    resource = {"model": {"connection": "up", "model": "truncate-early"}, "fallback": [{"connection": "up", "model": "error-first"}]}
    vmx = await vmx_factory(e2e_config(upstream, chat=resource))
    client = openai.AsyncOpenAI(base_url=vmx.base_url(), api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
    await client.close()
    assert info.value.status_code == 502
    assert "truncate-early" in info.value.message and "error-first" in info.value.message
