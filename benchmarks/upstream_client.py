"""What one upstream call costs in CPU: vmx's own client (``vmx_core.http``) against aiohttp,
the way vmx used it before (pooled session, default headers, a total timeout, the headers
copied) and the way the floor uses it (a bare ``session.post``), side by side.

Each client makes sequential POSTs of the benchmark's chat body to the benchmark's fake
upstream (``benchmarks/gateway/upstream.py``, started here on the other core) over one
keep-alive connection, in interleaved rounds; the figure is process CPU per request, so it
includes the event loop's own work for the exchange (the syscalls), which every client pays.

Run: ``.venv/bin/python -m benchmarks.upstream_client [requests per round] [rounds]``.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import uvloop

from benchmarks.gateway import configs
from benchmarks.gateway.targets import PYTHON, ROOT, free_port
from vmx_core.http import Client

BODY = configs.body("gpt-4o-mini", False)
HEADERS = {"authorization": "Bearer sk-bench"}

Call = Callable[[], Awaitable[object]]


async def vmx_client(base: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    client = Client(base, HEADERS)

    async def one() -> object:
        resp = await client.request("POST", "/chat/completions", BODY, {"content-type": "application/json"}, timeout=600)
        return orjson.loads(resp.body)

    return one, client.aclose


async def aiohttp_as_vmx_was(base: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=60, ttl_dns_cache=300), headers=HEADERS
    )

    async def one() -> object:
        async with session.post(base + "/chat/completions", data=BODY, headers={"content-type": "application/json"},
                                timeout=aiohttp.ClientTimeout(total=600)) as resp:
            raw = await resp.read()
            dict(resp.headers)
            return orjson.loads(raw)

    return one, session.close


async def aiohttp_as_floor(base: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))

    async def one() -> object:
        resp = await session.post(base + "/chat/completions", data=BODY, headers={"content-type": "application/json"})
        return await resp.read()

    return one, session.close


CLIENTS = {"vmx_core.http": vmx_client, "aiohttp (as vmx used it)": aiohttp_as_vmx_was, "aiohttp (as the floor)": aiohttp_as_floor}


async def measure(base: str, requests: int, rounds: int) -> dict[str, list[float]]:
    made = {name: await make(base) for name, make in CLIENTS.items()}
    results: dict[str, list[float]] = {name: [] for name in CLIENTS}
    try:
        for one, _ in made.values():
            for _ in range(300):
                await one()
        for r in range(rounds):
            order = list(made.items()) if r % 2 == 0 else list(reversed(made.items()))
            for name, (one, _) in order:
                start = time.process_time()
                for _ in range(requests):
                    await one()
                results[name].append((time.process_time() - start) / requests * 1e6)
    finally:
        for _, close in made.values():
            await close()
    return results


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    port = free_port()
    upstream = subprocess.Popen(["taskset", "-c", "0", PYTHON, str(ROOT / "benchmarks/gateway/upstream.py"), "--port", str(port)])
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        os.sched_setaffinity(0, {1})
        results = uvloop.run(measure(base, requests, rounds))
    finally:
        upstream.kill()
    print(f"CPU µs per upstream call, median of {rounds} rounds of {requests} (min-max):")
    for name, values in results.items():
        print(f"  {name:26s} {statistics.median(values):6.1f}  ({min(values):.1f}-{max(values):.1f})")


if __name__ == "__main__":
    main()
