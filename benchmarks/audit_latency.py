"""Request latency with the Postgres audit sink on vs off, side by side.

    .venv/bin/python benchmarks/audit_latency.py [REQUESTS_PER_ROUND] [ROUNDS] [RATE_PER_S]

Two in-process gateways on the same config -- ``storage.audit: none`` and a throw-away
PostgreSQL 15 (tests/services/postgres.py) -- answer the same open-loop load: requests arrive at
a fixed rate (default 400/s, well under what one core serves, as a gateway is run), and the
``mock`` provider takes 1 ms, like a fast upstream.  A closed loop at saturation would instead
measure throughput: any extra CPU work, audit or not, then lengthens every queue.  Rounds
alternate off/on so drift on a shared machine hits both alike; each round's p50/p99 is
computed, and the medians across rounds are reported.  In process, the audit writer shares the
event loop with the requests, so whatever it costs (record to row, pricing, COPY encoding)
shows up here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import KEY, KEY_SHA
from tests.services.postgres import PostgresServer
from vmx_core import ClientRequest, Format, Gateway
from vmx_core.audit.queue import QueueSink
from vmx_core.config import config_from_dict

BODY = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello " * 50}],
                     "vmx": {"correlationId": "bench", "metadata": {"team": "perf"}}})


def config(audit: str, spool: Path) -> Any:
    return config_from_dict({
        "storage": {"audit": audit},
        "audit": {"spool_dir": str(spool)},
        "workspaces": {"acme": {"environments": {"prod": {
            "connections": {"m": {"provider": "mock", "options": {"latency_ms": 1}}},
            "resources": {"chat": {"model": {"connection": "m", "model": "mock-1"}}},
            "api_keys": {"app": {"key_sha256": KEY_SHA, "resources": ["chat"]}},
        }}}},
    }, environ={})


async def round_(gw: Gateway, n: int, rate: float) -> list[float]:
    """``n`` requests arriving every ``1/rate`` s whatever the previous ones are doing."""
    latencies: list[float] = []

    async def one() -> None:
        t = time.perf_counter()
        await gw.handle(ClientRequest(Format.CHAT_COMPLETIONS, "acme", "prod", BODY, KEY))
        latencies.append((time.perf_counter() - t) * 1000)

    tasks = []
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the arrivals is the point of an open loop
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def bench(pg_uri: str, n: int, rounds: int, rate: float, tmp: Path) -> dict[str, Any]:
    off = Gateway.from_config(config("none", tmp / "spool-off"))
    on = Gateway.from_config(config(pg_uri, tmp / "spool-on"))
    stats: dict[str, dict[str, list[float]]] = {"off": {"p50": [], "p99": [], "rps": []},
                                                 "on": {"p50": [], "p99": [], "rps": []}}
    async with off, on:
        await round_(off, 500, rate)  # warm-up: token tables, connection pools, the first partition
        await round_(on, 500, rate)
        for _ in range(rounds):
            for name, gw in (("off", off), ("on", on)):
                t = time.perf_counter()
                lat = await round_(gw, n, rate)
                elapsed = time.perf_counter() - t
                stats[name]["p50"].append(pct(lat, 0.50))
                stats[name]["p99"].append(pct(lat, 0.99))
                stats[name]["rps"].append(n / elapsed)
        [sink] = on.sinks
        assert isinstance(sink, QueueSink)
        await sink.drained()
        written = sink.counters.written
    return {
        "requests_per_round": n, "rounds": rounds, "rate_per_s": rate, "rows_written": written,
        **{name: {k: round(statistics.median(v), 3) for k, v in s.items()} | {"p99_rounds": [round(x, 3) for x in s["p99"]]}
           for name, s in stats.items()},
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 400.0
    # The canonical log line is part of the cost, but not its terminal rendering.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tmp = Path(tempfile.mkdtemp())
    server = PostgresServer()
    server.init()
    server.start()
    try:
        result = asyncio.run(bench(server.create_database(), n, rounds, rate, tmp))
    finally:
        server.cleanup()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
