"""With the file store, SIGHUP reloads the config file: atomically, and never into a broken one."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp
import yaml

from tests.conftest import KEY
from tests.e2e.conftest import e2e_config
from tests.fakes.openai_upstream import FakeOpenAI


async def ask(url: str) -> tuple[int, str | None]:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http, http.post(
        url + "/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
    ) as resp:
        return resp.status, resp.headers.get("x-vmx-model")


async def test_sighup_swaps_in_the_edited_file(upstream: FakeOpenAI, vmx_factory: Any) -> None:
    """After SIGHUP, new requests route by the edited file; requests before it used the old one."""
    vmx = await vmx_factory(e2e_config(upstream))
    assert await ask(vmx.base_url()) == (200, "gpt-4o-mini")
    edited = e2e_config(upstream, chat="gpt-4.1-nano")
    vmx.config_path.write_text(yaml.safe_dump(edited))
    assert vmx.proc is not None
    reloaded = asyncio.Event()

    async def traffic() -> list[int]:
        # Requests keep flowing through the swap; none may fail.
        statuses = []
        while not reloaded.is_set() or len(statuses) < 20:
            statuses.append((await ask(vmx.base_url()))[0])
        return statuses

    flows = [asyncio.create_task(traffic()) for _ in range(4)]
    vmx.proc.send_signal(signal.SIGHUP)
    await vmx.wait_for_output(lambda line: "config_reloaded" in line)
    reloaded.set()
    statuses = [s for flow in await asyncio.gather(*flows) for s in flow]
    assert set(statuses) == {200}
    assert await ask(vmx.base_url()) == (200, "gpt-4.1-nano")


async def test_a_broken_file_is_refused_and_the_old_config_keeps_serving(upstream: FakeOpenAI, vmx_factory: Any) -> None:
    """A file with errors is logged with their paths; the gateway keeps its running config."""
    vmx = await vmx_factory(e2e_config(upstream))
    broken = e2e_config(upstream)
    broken["workspaces"]["acme"]["environments"]["prod"]["resources"]["chat"]["model"]["connection"] = "nope"
    vmx.config_path.write_text(yaml.safe_dump(broken))
    assert vmx.proc is not None
    vmx.proc.send_signal(signal.SIGHUP)
    line = await vmx.wait_for_output(lambda line: "config_reload_failed" in line)
    assert "resources.chat.model.connection" in line
    results = await asyncio.gather(*(ask(vmx.base_url()) for _ in range(5)))
    assert results == [(200, "gpt-4o-mini")] * 5
