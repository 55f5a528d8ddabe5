"""The pipeline's own cost, in process: ``Gateway.handle`` against an instant fake provider.

No sockets and no server, so the number is the engine alone (auth, parse, resolve, legs,
headers, audit/log hand-off).  Run: ``.venv/bin/python benchmarks/inprocess_overhead.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import statistics
import sys
import time

import orjson
import structlog

from vmx_core import ClientRequest, Format
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway

N = 20_000
ROUNDS = 5


async def measure(stream: bool) -> list[float]:
    body = orjson.dumps(
        {"model": "chat", "stream": stream, "messages": [{"role": "user", "content": "hello " * 50}],
         "vmx": {"correlationId": "bench", "metadata": {"team": "perf"}}}
    )
    per_round = []
    async with make_test_gateway(FakeProvider()) as gw:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(N):
                reply = await gw.handle(ClientRequest(Format.CHAT_COMPLETIONS, "test", "test", body, TEST_KEY))
                if stream:
                    async for _frame in reply:  # type: ignore[union-attr]
                        pass
            per_round.append((time.perf_counter() - start) / N * 1e6)
    return per_round


def main() -> None:
    # The canonical log line is part of the cost, but not its terminal rendering.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = {"python": sys.version.split()[0], "machine": platform.machine(), "n": N, "rounds": ROUNDS}
    for stream in (False, True):
        rounds = asyncio.run(measure(stream))
        result["stream" if stream else "non_stream"] = {
            "median_us": round(statistics.median(rounds), 1), "min_us": round(min(rounds), 1)
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
