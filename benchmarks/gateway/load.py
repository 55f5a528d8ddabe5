"""Closed-loop throughput with wrk and ``lua/post.lua``: N connections, each sending its next
request as soon as the previous answer is complete."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua" / "post.lua"


def wrk(port: int, path: str, headers: dict[str, str], body: bytes, connections: int, seconds: float,
        cpus: str) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        env = {**os.environ, "BENCH_PATH": path, "BENCH_BODY": f.name,
               "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
        out = subprocess.run(
            ["taskset", "-c", cpus, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
             "-s", str(LUA), f"http://127.0.0.1:{port}"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            result["errors"] = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors",
                                                       "status_errors", "timeouts"))
            return result
    raise RuntimeError(f"wrk printed no summary:\n{out}")
