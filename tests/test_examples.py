"""The embedding examples run for real: each is started as its own process on a loopback port,
exactly as its docstring says to run it, and answers through the gateway it embeds."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CONFIG = EXAMPLES / "embedded.yaml"
KEY = "vmx_embedded_example_local_development_key_0000"
#: hypercorn prints "Running on http://127.0.0.1:PORT", aiohttp "======== Running on http://...".
_RUNNING = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


class ExampleProcess:
    def __init__(self, script: str) -> None:
        self.script = EXAMPLES / script
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.lines: list[bytes] = []
        self._pump: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(self.script), "--config", str(CONFIG), "--host", "127.0.0.1", "--port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.script.name} exited during startup:\n{self.output()}")
                self.lines.append(line)
                if m := _RUNNING.search(line):
                    self.port = int(m.group(1))
                    break
        self._pump = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line)

    def output(self) -> str:
        return b"".join(self.lines).decode("utf-8", "replace")

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await self.proc.wait()
            if self._pump is not None:
                await self._pump
        return code


async def _started(script: str) -> AsyncIterator[ExampleProcess]:
    proc = ExampleProcess(script)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


@pytest.fixture
async def starlette_example() -> AsyncIterator[ExampleProcess]:
    async for proc in _started("embed_starlette.py"):
        yield proc


@pytest.fixture
async def aiohttp_example() -> AsyncIterator[ExampleProcess]:
    async for proc in _started("embed_aiohttp.py"):
        yield proc


async def _post(url: str, payload: dict[str, object]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url, json=payload) as resp:
        return resp.status, await resp.text()


# -- Starlette --------------------------------------------------------------------------------


async def test_starlette_route_answers_through_in_process_gateway(starlette_example: ExampleProcess) -> None:
    """The host's own ``/ask`` route gets the mock model's answer from ``chat_completions``."""
    async with aiohttp.ClientSession() as session:
        async with session.post(starlette_example.url + "/ask", json={"question": "What is vmx?"}) as resp:
            assert resp.status == 200
            data = await resp.json()
    assert data["answer"] == "Mock answer to: What is vmx?"
    assert data["model"] == "mock-1"


async def test_starlette_stream_route_relays_the_streaming_form(starlette_example: ExampleProcess) -> None:
    """``/ask/stream`` streams the text assembled from ``stream_chat_completions`` chunks."""
    status, text = await _post(starlette_example.url + "/ask/stream", {"question": "stream this please"})
    assert status == 200
    assert text == "Mock answer to: stream this please"


async def test_starlette_mounted_vmx_api_serves_the_openai_sdk(starlette_example: ExampleProcess) -> None:
    """vmx_server's app mounted under ``/llm`` answers the official SDK, streaming and not."""
    client = openai.AsyncOpenAI(
        base_url=starlette_example.url + "/llm/v1/completion/acme/dev", api_key=KEY, max_retries=0
    )
    try:
        completion = await client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "mounted"}]
        )
        stream = await client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "mounted stream"}], stream=True
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        async with openai.AsyncOpenAI(
            base_url=starlette_example.url + "/llm/v1/completion/acme/dev", api_key="vmx_wrong", max_retries=0
        ) as stranger:
            with pytest.raises(openai.AuthenticationError):
                await stranger.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "x"}])
    finally:
        await client.close()
    assert completion.choices[0].message.content == "Mock answer to: mounted"
    assert streamed == "Mock answer to: mounted stream"


async def test_starlette_example_stops_cleanly_on_sigterm() -> None:
    """SIGTERM runs the host lifespan's shutdown (gateway.aclose) and the process exits 0."""
    proc = ExampleProcess("embed_starlette.py")
    await proc.start()
    status, _ = await _post(proc.url + "/ask", {"question": "bye"})
    assert status == 200
    assert await proc.stop() == 0, proc.output()


# -- aiohttp ----------------------------------------------------------------------------------


async def test_aiohttp_route_answers_through_in_process_gateway(aiohttp_example: ExampleProcess) -> None:
    """The aiohttp app's ``/ask`` route gets the answer from the gateway started in on_startup."""
    async with aiohttp.ClientSession() as session:
        async with session.post(aiohttp_example.url + "/ask", json={"question": "from aiohttp"}) as resp:
            assert resp.status == 200
            data = await resp.json()
    assert data == {"answer": "Mock answer to: from aiohttp", "model": "mock-1"}


async def test_aiohttp_handle_endpoint_serves_sdk_json_and_sse(aiohttp_example: ExampleProcess) -> None:
    """``/chat/completions`` built on ``Gateway.handle`` works with the SDK, streaming and not."""
    client = openai.AsyncOpenAI(base_url=aiohttp_example.url, api_key="unused-by-the-host", max_retries=0)
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="assistant", messages=[{"role": "user", "content": "whole"}]
        )
        stream = await client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "in pieces"}], stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    finally:
        await client.close()
    assert raw.parse().choices[0].message.content == "Mock answer to: whole"
    assert raw.headers["x-vmx-resource"] == "assistant"
    assert "".join(pieces) == "Mock answer to: in pieces"
    assert len([p for p in pieces if p]) > 1


async def test_aiohttp_handle_endpoint_answers_errors_in_openai_dialect(aiohttp_example: ExampleProcess) -> None:
    """A ``RequestError`` becomes vmx's status and OpenAI error body via ``body_for``."""
    client = openai.AsyncOpenAI(base_url=aiohttp_example.url, api_key="unused-by-the-host", max_retries=0)
    try:
        with pytest.raises(openai.NotFoundError) as excinfo:
            await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    finally:
        await client.close()
    assert excinfo.value.status_code == 404
    assert excinfo.value.code == "not_found"
    assert excinfo.value.response.headers.get("x-vmx-request-id")


async def test_aiohttp_example_stops_cleanly_on_sigterm() -> None:
    """SIGTERM runs on_cleanup (gateway.aclose) and the aiohttp process exits 0."""
    proc = ExampleProcess("embed_aiohttp.py")
    await proc.start()
    status, _ = await _post(proc.url + "/ask", {"question": "bye"})
    assert status == 200
    assert await proc.stop() == 0, proc.output()
