"""The Gateway used in-process, with no web framework."""

from __future__ import annotations

import pytest

from tests.conftest import KEY
from vmx_core import Gateway
from vmx_core.errors import AuthenticationFailed, NotFound, PermissionDenied


async def test_chat_completion_answers_with_vmx_headers(gateway: Gateway) -> None:
    """A non-streamed call returns the provider's JSON and the DESIGN §5 headers."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}], "vmx": {"correlationId": "c-1"}}
    reply = await gateway.chat_completions("acme", "prod", body, api_key=KEY)
    data = reply.json()
    assert data["object"] == "chat.completion"
    assert "hello" in data["choices"][0]["message"]["content"]
    assert reply.headers["x-vmx-resource"] == "chat"
    assert reply.headers["x-vmx-provider"] == "mock"
    assert reply.headers["x-vmx-model"] == "mock-1"
    assert reply.headers["x-vmx-correlation-id"] == "c-1"


async def test_streaming_form_yields_chunks(gateway: Gateway) -> None:
    """The streaming form yields parsed chunks whose deltas make up the answer."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "stream me"}]}
    text = ""
    async for chunk in gateway.stream_chat_completions("acme", "prod", body, api_key=KEY):
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
    assert "stream me" in text


async def test_errors_follow_design_order(gateway: Gateway) -> None:
    """Unknown key is 401, unknown resource 404, unknown environment 404."""
    body = {"model": "chat", "messages": []}
    with pytest.raises(AuthenticationFailed):
        await gateway.chat_completions("acme", "prod", body, api_key="vmx_wrong")
    with pytest.raises(NotFound):
        await gateway.chat_completions("acme", "prod", {**body, "model": "nope"}, api_key=KEY)
    with pytest.raises(NotFound):
        await gateway.chat_completions("acme", "staging", body, api_key=KEY)
    assert PermissionDenied.status == 403
