"""``make bench``: every target side by side, in interleaved rounds, on one core each.

The gateway under test runs on ``GATEWAY_CPU``; wrk, the latency client, the fake upstream
and the databases share ``LOAD_CPUS``.  Targets are measured in turn within each round, the
order rotating between rounds, so that a noisy neighbour on this shared machine spreads over
all of them instead of landing on one.

Run: ``.venv/bin/python -m benchmarks.gateway.run [--quick] [--targets vmx,floor,...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import http.client
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.gateway import latency, load, peers, procstat, report, services
from benchmarks.gateway.targets import ALL, HERE, PYTHON, Target, build, free_port

GATEWAY_CPU = "1"
LOAD_CPUS = "0"
RESULTS = HERE.parent / "results"
CONNECTIONS = (1, 16, 64)


def plan(quick: bool) -> dict[str, Any]:
    if quick:
        return {"rounds": 1, "seconds": 3, "warmup_s": 1, "lat_rounds": 2, "lat_count": 15, "cold_starts": 1}
    return {"rounds": 2, "seconds": 6, "warmup_s": 3, "lat_rounds": 4, "lat_count": 30, "cold_starts": 3}


def rotated(items: list[Target], r: int) -> list[Target]:
    k = r % len(items)
    return items[k:] + items[:k]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a run of a few minutes")
    parser.add_argument("--targets", default=",".join(ALL))
    parser.add_argument("--rate", type=float, default=5.0, help="open-loop requests per second")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="upstream delay per stream chunk")
    args = parser.parse_args()
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    p = plan(args.quick)
    out = RESULTS / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / "logs").mkdir(parents=True)
    if "portkey" in names:
        peers.install_portkey()
    if "litellm" in names:
        peers.install_litellm()

    raw: dict[str, Any] = {"plan": p, "rate": args.rate, "chunk_delay_ms": args.chunk_delay_ms,
                           "machine": machine(), "command": " ".join(sys.argv), "targets": names}
    upstream_port = free_port()
    upstream = subprocess.Popen(
        ["taskset", "-c", LOAD_CPUS, PYTHON, str(HERE / "upstream.py"), "--port", str(upstream_port),
         "--chunk-delay-ms", str(args.chunk_delay_ms)],
        stdout=(out / "logs" / "upstream.log").open("wb"), stderr=subprocess.STDOUT,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(upstream.terminate)
        stores = stack.enter_context(services.stores(LOAD_CPUS)) if "vmx-redis-postgres" in names else None
        targets = build(names, out, upstream_port, stores)
        for t in targets:
            stack.callback(t.stop)
        raw["cold_start_s"] = start_all(targets, out, p["cold_starts"])
        print("started:", ", ".join(f"{t.name} ({t.cold_start_s or 0:.2f} s)" for t in targets), flush=True)
        warm_up(targets, p["warmup_s"])
        raw["memory_after_warmup"] = {t.name: procstat.memory_kib(t.proc.pid) for t in targets if t.proc}
        raw["throughput"] = throughput(targets, p)
        raw["latency"] = asyncio.run(open_loop(targets, p, args.rate))
        raw["memory_end"] = {t.name: procstat.memory_kib(t.proc.pid) for t in targets if t.proc}
    (out / "raw.json").write_text(json.dumps(raw, indent=1))
    summary = report.summarise(raw)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "results.md").write_text(report.markdown(raw, summary))
    report.plot(summary, out / "throughput-vs-p99.png")
    print((out / "results.md").read_text())
    print(f"results: {out}")


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    def version(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unavailable"
    return {
        "cpu": cpu, "cores": len(procstat.os.sched_getaffinity(0)), "python": platform.python_version(),
        "kernel": platform.release(), "node": version(["node", "--version"]), "wrk": version(["wrk", "--version"]),
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
        "versions": pip_versions(["hypercorn", "starlette", "aiohttp", "uvloop", "uvicorn", "orjson", "vmx"]),
    }


def pip_versions(names: list[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for n in names:
        try:
            found[n] = version(n)
        except PackageNotFoundError:
            found[n] = "absent"
    found["portkey"], found["litellm"] = peers.PORTKEY_VERSION, peers.LITELLM_VERSION
    return found


def start_all(targets: list[Target], out: Path, times: int) -> dict[str, list[float]]:
    """One after another (a start on a busy core would be slower); cold starts repeated
    ``times`` times, the last process kept."""
    starts: dict[str, list[float]] = {}
    for t in targets:
        for i in range(times):
            if i:
                t.stop()
            t.start(GATEWAY_CPU, out / "logs" / f"{t.name}.log")
            if t.cold_start_s is not None:
                starts.setdefault(t.name, []).append(t.cold_start_s)
    return starts


def warm_up(targets: list[Target], seconds: float) -> None:
    for t in targets:
        for stream in (False, True):
            # One request alone first: a target may load things on its first call (vmx: the
            # o200k token tables), which must not count as a failed warm-up.
            conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=60)
            conn.request("POST", t.path, t.body(stream), {"content-type": "application/json", **t.headers})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status != 200:
                raise RuntimeError(f"{t.name} (stream={stream}) answered HTTP {resp.status}")
            r = load.wrk(t.port, t.path, t.headers, t.body(stream), 16, seconds, LOAD_CPUS)
            if r["errors"] or not r["requests"]:
                raise RuntimeError(f"{t.name} (stream={stream}) failed its warm-up: {r}")


def throughput(targets: list[Target], p: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in range(p["rounds"]):
        for stream in (False, True):
            for conns in CONNECTIONS:
                for t in rotated(targets, r):
                    pid = t.proc.pid if t.proc else None
                    cpu0 = procstat.cpu_seconds(pid) if pid else 0.0
                    res = load.wrk(t.port, t.path, t.headers, t.body(stream), conns, p["seconds"], LOAD_CPUS)
                    cpu = procstat.cpu_seconds(pid) - cpu0 if pid else None
                    res.update(target=t.name, round=r, stream=stream, connections=conns, cpu_s=cpu,
                               cpu_ms_per_request=cpu * 1000 / res["requests"] if cpu is not None and res["requests"] else None)
                    rows.append(res)
                    print(f"  r{r} {'stream' if stream else 'whole '} c{conns:<2} {t.name:<20} "
                          f"{res['rps']:8.0f} req/s  p99 {res['p99_us'] / 1000:7.2f} ms  errors {res['errors']:.0f}"
                          + (f"  cpu {res['cpu_ms_per_request']:.3f} ms/req" if res["cpu_ms_per_request"] else ""),
                          flush=True)
    return rows


async def open_loop(targets: list[Target], p: dict[str, Any], rate: float) -> list[dict[str, Any]]:
    rows = []
    for r in range(p["lat_rounds"]):
        for t in rotated(targets, r):
            for stream in (False, True):
                req = latency.http_request(t.path, t.headers, t.body(stream))
                started = time.perf_counter()
                samples = await latency.measure(t.port, req, p["lat_count"], rate)
                rows.extend({"target": t.name, "round": r, "stream": stream, "total_ms": s.total_ms,
                             "ttfb_ms": s.ttfb_ms, "status": s.status, "overhead_ms": s.overhead_ms}
                            for s in samples)
                print(f"  latency r{r} {t.name:<20} stream={stream!s:<5} {time.perf_counter() - started:.1f} s", flush=True)
    return rows


if __name__ == "__main__":
    main()
