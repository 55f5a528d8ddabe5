"""Variants of one target measured side by side: what a server, a header count, a driver or a
governance feature costs, as CPU per request under load or as added latency at a low rate.

``make bench`` compares the issue's fixed targets; this answers the follow-up questions its
profile raises ("is it hypercorn?", "what do the routing rules cost at 5 req/s?").  A variant
file (``benchmarks/gateway/variants/*.json``) lists processes to start, each pinned to the
gateway core like ``make bench``'s targets:

``label``
    its name in the output;
``argv``
    the command, with ``{python}``, ``{port}``, ``{upstream}`` and ``{config}`` filled in;
``vmx``
    true for a vmx process: it gets the benchmark's vmx config (``benchmarks/gateway/configs``),
    changed by ``edit``, a Python statement run with the config dict as ``cfg`` and its
    ``acme/prod`` environment as ``env``;
``audit`` / ``capacity``
    the storage URLs (``{pg}`` and ``{redis}`` start PostgreSQL and Redis as ``make bench``
    does); ``env``: extra environment variables; ``cwd``: where to start it (another
    checkout, e.g. a ``git worktree`` of the commit to compare with).

Run (from the repository root)::

    .venv/bin/python -m benchmarks.gateway.variants cpu benchmarks/gateway/variants/server-stack.json
    .venv/bin/python -m benchmarks.gateway.variants latency benchmarks/gateway/variants/governance.json

``cpu`` runs ``wrk`` at 16 connections for ``--seconds`` per variant, interleaved over
``--rounds`` (the order reversing each round), and prints the median CPU ms per request.
``latency`` sends ``--count`` requests at ``--rate`` per second to each variant and to the
upstream itself, interleaved over ``--rounds``, and prints the p50 added total time (whole
answers) and time to the first frame (streams).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.gateway import configs, latency, load, procstat, services
from benchmarks.gateway.targets import PYTHON, ROOT, Target, free_port

GATEWAY_CPU = "1"
LOAD_CPUS = "0"
VMX_PATH = "/v1/completion/acme/prod/chat/completions"


def _fill(text: str, values: dict[str, str]) -> str:
    for k, val in values.items():
        text = text.replace(k, val)
    return text


def _targets(spec: list[dict[str, Any]], work: Path, upstream: str, stores: tuple[str, str]) -> list[Target]:
    made = []
    for i, v in enumerate(spec):
        fill = {"{python}": PYTHON, "{upstream}": upstream, "{root}": str(ROOT)}
        env: dict[str, str] = {}
        if v.get("vmx"):
            audit = v.get("audit", f"sqlite:///{work / f'audit-{i}.db'}").replace("{pg}", stores[1])
            cfg = configs.vmx_config(upstream, audit, v.get("capacity", "memory://").replace("{redis}", stores[0]))
            exec(v.get("edit", ""), {"cfg": cfg, "env": cfg["workspaces"]["acme"]["environments"]["prod"]})
            path = work / f"vmx-{i}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            fill["{config}"] = str(path)
            env.setdefault("VMX_CONFIG", str(path))
        argv = [_fill(a, fill) for a in v["argv"]]
        env.update({k: _fill(val, fill) for k, val in v.get("env", {}).items()})
        cwd = Path(_fill(v.get("cwd", "{root}"), fill))
        if v.get("vmx"):
            t = Target(v["label"], argv, "/healthz", VMX_PATH, "chat",
                       {"authorization": f"Bearer {configs.VMX_KEY}"}, env=env, cwd=cwd, vmx=True)
        else:
            t = Target(v["label"], argv, "/healthz", "/v1/chat/completions", "gpt-4o-mini", env=env, cwd=cwd)
        made.append(t)
    return made


def cpu(targets: list[Target], rounds: int, seconds: int, stream: bool) -> None:
    for t in targets:  # warm: first-request paths, connection pools
        load.wrk(t.port, t.path, t.headers, t.body(stream), 16, 2, LOAD_CPUS)
    per: dict[str, list[float]] = {t.name: [] for t in targets}
    for r in range(rounds):
        for t in targets if r % 2 == 0 else targets[::-1]:
            assert t.proc is not None
            before = procstat.cpu_seconds(t.proc.pid)
            out = load.wrk(t.port, t.path, t.headers, t.body(stream), 16, seconds, LOAD_CPUS)
            used = procstat.cpu_seconds(t.proc.pid) - before
            if out["errors"]:
                raise RuntimeError(f"{t.name}: {out['errors']:.0f} errors under load")
            per[t.name].append(used / out["requests"] * 1000)
    for t in targets:
        v = per[t.name]
        print(f"{t.name:28s} CPU ms/request median {statistics.median(v):.3f}  min {min(v):.3f}  max {max(v):.3f}")


async def added_latency(targets: list[Target], direct: Target, rounds: int, count: int, rate: float) -> None:
    everyone = [direct, *targets]
    got: dict[tuple[str, bool], list[float]] = {(t.name, s): [] for t in everyone for s in (False, True)}
    for t in everyone:  # warm
        for s in (False, True):
            await latency.measure(t.port, latency.http_request(t.path, t.headers, t.body(s)), 10, 50)
    for r in range(rounds):
        for t in everyone[r % len(everyone):] + everyone[: r % len(everyone)]:
            for s in (False, True):
                samples = await latency.measure(t.port, latency.http_request(t.path, t.headers, t.body(s)), count, rate)
                got[(t.name, s)].extend(x.ttfb_ms if s else x.total_ms for x in samples)
    base = {s: statistics.median(got[(direct.name, s)]) for s in (False, True)}
    for t in targets:
        whole = statistics.median(got[(t.name, False)]) - base[False]
        first = statistics.median(got[(t.name, True)]) - base[True]
        print(f"{t.name:28s} added p50 total (whole) {whole:+.3f} ms   time to first frame (stream) {first:+.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("cpu", "latency"))
    parser.add_argument("spec", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=4, help="cpu: wrk seconds per variant and round")
    parser.add_argument("--stream", action="store_true", help="cpu: streamed answers")
    parser.add_argument("--count", type=int, default=40, help="latency: requests per variant and round")
    parser.add_argument("--rate", type=float, default=10.0, help="latency: requests per second")
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    needs_stores = any("{pg}" in v.get("audit", "") or "{redis}" in v.get("capacity", "") for v in spec)
    with tempfile.TemporaryDirectory(prefix="vmx-variants-") as d, \
            (services.stores(LOAD_CPUS) if needs_stores else contextlib.nullcontext(("", ""))) as stores:
        work = Path(d)
        port = free_port()
        up = subprocess.Popen(["taskset", "-c", LOAD_CPUS, PYTHON, str(Path(__file__).parent / "upstream.py"),
                               "--port", str(port)], cwd=ROOT)
        direct = Target("direct", [], "/healthz", "/v1/chat/completions", "gpt-4o-mini", port=port)
        targets = _targets(spec, work, f"http://127.0.0.1:{port}/v1", stores)
        try:
            deadline = time.monotonic() + 10
            while not direct._healthy():
                if time.monotonic() > deadline:
                    raise RuntimeError("the upstream did not start")
                time.sleep(0.01)
            for t in targets:
                t.start(GATEWAY_CPU, work / f"{t.name}.log")
            if args.mode == "cpu":
                cpu(targets, args.rounds, args.seconds, args.stream)
            else:
                asyncio.run(added_latency(targets, direct, args.rounds, args.count, args.rate))
        finally:
            for t in targets:
                t.stop()
            up.kill()
            up.wait()


if __name__ == "__main__":
    sys.exit(main())
