"""A config reload swaps atomically; requests in flight finish on the config they started with."""

from __future__ import annotations

from tests.conftest import KEY, base_config
from vmx_core import Gateway
from vmx_core.config import config_from_dict


async def test_stream_in_flight_finishes_on_the_old_config_after_a_reload() -> None:
    """A stream opened before a reload completes on the old model; new requests use the new one."""
    old = base_config(connections={"m": {"provider": "mock", "options": {"reply": "old answer here"}}})
    new = base_config(connections={"m": {"provider": "mock", "options": {"reply": "new answer"}}})
    async with Gateway.from_config(config_from_dict(old, environ={})) as gw:
        body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
        stream = gw.stream_chat_completions("acme", "prod", body, api_key=KEY)
        first = await anext(stream)
        old_runtime = gw.runtime
        await gw.reload(config_from_dict(new, environ={}))
        assert old_runtime is not None and old_runtime.retired and old_runtime.in_flight == 1
        rest = [chunk async for chunk in stream]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in [first, *rest] if c["choices"])
        fresh = await gw.chat_completions("acme", "prod", body, api_key=KEY)
        assert old_runtime.in_flight == 0
    assert text == "old answer here"
    assert fresh.json()["choices"][0]["message"]["content"] == "new answer"
