"""The smallest end-to-end path: the official SDK against a real vmx process."""

from __future__ import annotations

import openai

from tests.conftest import KEY
from tests.e2e.conftest import UPSTREAM_SECRET
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess


async def test_async_sdk_chat_reaches_upstream_with_connection_key(vmx: VmxProcess, upstream: FakeOpenAI) -> None:
    """The SDK's call arrives upstream with the provider model id and the connection's key."""
    client = openai.AsyncOpenAI(base_url=vmx.base_url(), api_key=KEY, max_retries=0)
    completion = await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "ping"}], extra_body={"vmx": {"correlationId": "x"}}
    )
    await client.close()
    assert completion.choices[0].message.content == "echo: ping"
    seen = upstream.requests[-1]
    assert seen["body"]["model"] == "gpt-4o-mini"
    assert seen["headers"]["Authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert "vmx" not in seen["body"]
