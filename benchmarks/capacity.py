"""Capacity admission cost per store: admissions per second and the added latency per request.

Each request is what the pipeline does for one leg with 3 limits (a connection RPM+TPM, a
resource RPM and an API key's daily tokens): one atomic admission, then the reconciliation.
The "+ pools" rows add 3 prioritization pools on the connection's minute token budget (the
pool step runs inside the same admission; the request's pool is reconciled too).
Redis servers (one instance and a 3-node cluster) are started on loopback ports.

Run: ``.venv/bin/python benchmarks/capacity.py`` (needs ``redis-server``).
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.services.redis import RedisCluster, RedisServer
from vmx_core.capacity.gate import Gate, Subject
from vmx_core.capacity.memory import MemoryStore
from vmx_core.capacity.redis import RedisStore
from vmx_core.capacity.store import CapacityStore
from vmx_core.config import config_from_dict
from vmx_core.wire.usage import Usage

SEQUENTIAL = 5_000
CONCURRENT = 20_000
IN_FLIGHT = 64
BIG = 10**12  # limits never reached: the benchmark measures admissions, not refusals


def config(pools: bool) -> dict[str, object]:
    env: dict[str, object] = {
        "connections": {"up": {"provider": "mock", "capacity": [{"period": "minute", "requests": BIG, "tokens": BIG}]}},
        "resources": {"chat": {"model": {"connection": "up", "model": "m"}, "capacity": [{"period": "minute", "requests": BIG}]}},
        "api_keys": {"app": {"key": "vmx_bench", "resources": ["*"], "capacity": [{"period": "day", "tokens": BIG}]}},
    }
    if pools:
        env["pools"] = [
            {"name": "interactive", "rank": 1, "min_reservation": 40, "max_reservation": 100, "resources": ["chat"]},
            {"name": "batch", "rank": 2, "min_reservation": 30, "max_reservation": 70},
            {"name": "bulk", "rank": 3, "min_reservation": 10, "max_reservation": 100},
        ]
    return {"workspaces": {"acme": {"environments": {"prod": env}}}}


async def one(gate: Gate, subject: Subject) -> None:
    ticket = await gate.admit(subject, 500)
    await gate.settle(ticket, Usage(prompt_tokens=120, completion_tokens=80))


async def measure(store: CapacityStore, pools: bool) -> dict[str, float]:
    gate = Gate.build(config_from_dict(config(pools), environ={}), store)
    subject = Subject("acme", "prod", "up", "chat", "app", "127.0.0.1", {})
    assert len(gate.limits(subject)) == 3 and (gate.pool_check(subject) is not None) == pools
    for _ in range(200):  # warm up: connections, script cache
        await one(gate, subject)
    lat = []
    for _ in range(SEQUENTIAL):
        t = time.perf_counter()
        await one(gate, subject)
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def bounded() -> None:
        async with sem:
            await one(gate, subject)

    t = time.perf_counter()
    await asyncio.gather(*(bounded() for _ in range(CONCURRENT)))
    rate = CONCURRENT / (time.perf_counter() - t)
    return {"p50_us": statistics.median(lat), "p99_us": lat[int(len(lat) * 0.99)], "per_s": rate}


async def main() -> None:
    print(f"python {platform.python_version()}, {platform.machine()}; 3 limits; admit + settle per request")
    print(f"{'store':<24} {'p50 µs':>9} {'p99 µs':>9} {'requests/s':>11}  (sequential latency; throughput at {IN_FLIGHT} in flight)")
    with tempfile.TemporaryDirectory() as d:
        single = RedisServer(Path(d))
        (Path(d) / "c").mkdir()
        cluster = RedisCluster(Path(d) / "c")
        single.start()
        cluster.start()
        try:
            for name, store in (
                ("memory://", MemoryStore()),
                ("redis://", RedisStore.from_uri(single.url)),
                ("redis+cluster://", RedisStore.from_uri(cluster.url)),
            ):
                for pools in (False, True):
                    r = await measure(store, pools)
                    label = name + (" + pools" if pools else "")
                    print(f"{label:<24} {r['p50_us']:>9.1f} {r['p99_us']:>9.1f} {r['per_s']:>11.0f}")
                await store.aclose()
        finally:
            single.stop()
            cluster.stop()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
