"""What each governance feature costs per request, in process: the vmx variants of
``benchmarks/gateway/variants/governance.json`` (the `make bench` config, and the same with
its limits, its routing rules or its audit sink removed; not those that differ only in server
options such as the log level), each a Gateway of its own in one process, measured in interleaved rounds (CPU time of the whole process, so the
SQLite writes on the event loop count) against the benchmark's fake upstream over HTTP.

No HTTP server is involved: the difference between two lines is that feature's own cost,
without the server's noise (``benchmarks/gateway/variants.py`` measures the same through
hypercorn).

Run: ``.venv/bin/python -m benchmarks.governance_cost [requests per round] [rounds]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.gateway import configs
from benchmarks.gateway.targets import free_port
from vmx_core import ClientRequest, Format, Gateway
from vmx_core.config import config_from_dict
from vmx_server import logging as vmx_logging

SPEC = Path(__file__).parent / "gateway" / "variants" / "governance.json"


def variants() -> list[dict[str, Any]]:
    """The in-process variants of the spec: vmx ones started without extra server options."""
    return [v for v in json.loads(SPEC.read_text()) if v.get("vmx") and v["argv"][-2:] == ["--port", "{port}"]]


def log_like_the_server() -> None:
    """The server's JSON request line at info (its cost counts), written to /dev/null."""
    real, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        vmx_logging.configure("info")
    finally:
        sys.stdout = real


async def measure(upstream: str, work: Path, n: int, rounds: int) -> dict[str, list[float]]:
    log_like_the_server()
    gateways = {}
    for i, v in enumerate(variants()):
        cfg = configs.vmx_config(upstream, v.get("audit", f"sqlite:///{work / f'audit-{i}.db'}"), "memory://")
        exec(v.get("edit", ""), {"cfg": cfg, "env": cfg["workspaces"]["acme"]["environments"]["prod"]})
        gw = Gateway.from_config(config_from_dict(cfg, environ={}))
        await gw.start()
        gateways[v["label"]] = gw
    body = configs.body("chat", False, vmx=True)
    headers = {"content-type": "application/json"}
    per: dict[str, list[float]] = {name: [] for name in gateways}
    try:
        for r in range(rounds + 1):  # round 0 warms up
            for name, gw in gateways.items():
                started = time.process_time()
                for _ in range(n):
                    await gw.handle(ClientRequest(Format.CHAT_COMPLETIONS, "acme", "prod", body, configs.VMX_KEY,
                                                  headers, "127.0.0.1"))
                if r:
                    per[name].append((time.process_time() - started) / n * 1e6)
                await asyncio.sleep(0.05)  # let the audit batch of this round go out
    finally:
        for gw in gateways.values():
            await gw.aclose()
    return per


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    port = free_port()
    up = subprocess.Popen(["taskset", "-c", "0", sys.executable, str(Path(__file__).parent / "gateway" / "upstream.py"),
                           "--port", str(port)])
    try:
        time.sleep(0.5)
        os.sched_setaffinity(0, {1})
        with tempfile.TemporaryDirectory(prefix="vmx-governance-") as d:
            per = uvloop.run(measure(f"http://127.0.0.1:{port}/v1", Path(d), n, rounds))
    finally:
        up.kill()
        up.wait()
    full = statistics.median(per["vmx"])
    print(f"µs of process CPU per request, median of {rounds} rounds x {n} requests")
    for name, values in per.items():
        m = statistics.median(values)
        print(f"{name:28s} {m:7.1f}" + ("" if m == full else f"   feature: {full - m:5.1f}"))


if __name__ == "__main__":
    main()
