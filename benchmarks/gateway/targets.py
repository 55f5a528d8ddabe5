"""The targets: how each one is started, pinned, health-checked and called."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks.gateway import configs, peers

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
#: A server that is not answering /healthz after this long failed to start.
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Target:
    name: str
    argv: list[str]
    health: str
    path: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    vmx: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    cold_start_s: float | None = None

    def body(self, stream: bool) -> bytes:
        return configs.body(self.model, stream, vmx=self.vmx)

    def start(self, cpus: str, log: Path) -> None:
        """Start pinned to ``cpus``; the cold start is the time to the first 200 on /healthz."""
        if not self.argv:  # `direct`: the upstream, started by the runner
            return
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        started = time.perf_counter()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", cpus, *argv], cwd=self.cwd, env={**os.environ, **self.env},
                stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = started + START_TIMEOUT_S
        while not self._healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during startup; see {log}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{self.name} did not answer {self.health} within {START_TIMEOUT_S} s")
            time.sleep(0.005)
        self.cold_start_s = time.perf_counter() - started

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", self.health)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _vmx_config(workdir: Path, name: str, upstream: str, audit: str, capacity: str) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(configs.vmx_config(upstream, audit, capacity)))
    return path


def build(names: list[str], workdir: Path, upstream_port: int, stores: tuple[str, str] | None) -> list[Target]:
    """The targets named, in that order.  ``stores`` is (redis URL, postgres URI) when
    ``vmx-redis-postgres`` is among them."""
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    vmx_headers = {"authorization": f"Bearer {configs.VMX_KEY}"}
    vmx_path = "/v1/completion/acme/prod/chat/completions"
    sqlite = f"sqlite:///{workdir / 'vmx-audit.db'}"
    made: dict[str, Target] = {}
    for name in names:
        if name == "direct":
            t = Target(name, [], "/healthz", "/v1/chat/completions", "gpt-4o-mini", port=upstream_port)
        elif name == "floor":
            t = Target(name, [PYTHON, str(HERE / "floor.py"), "--port", "{port}", "--upstream", upstream],
                       "/healthz", "/v1/chat/completions", "gpt-4o-mini")
        elif name == "vmx":
            cfg = _vmx_config(workdir, name, upstream, sqlite, "memory://")
            t = Target(name, [PYTHON, "-m", "vmx_server", "--config", str(cfg), "--port", "{port}"],
                       "/healthz", vmx_path, "chat", vmx_headers, vmx=True)
        elif name == "vmx-redis-postgres":
            assert stores is not None
            cfg = _vmx_config(workdir, name, upstream, stores[1], stores[0])
            t = Target(name, [PYTHON, "-m", "vmx_server", "--config", str(cfg), "--port", "{port}"],
                       "/healthz", vmx_path, "chat", vmx_headers, vmx=True)
        elif name == "vmx-uvicorn":
            cfg = _vmx_config(workdir, name, upstream, f"sqlite:///{workdir / 'vmx-uvicorn-audit.db'}", "memory://")
            t = Target(name, [PYTHON, "-m", "uvicorn", "vmx_server.asgi:app", "--host", "127.0.0.1", "--port", "{port}",
                              "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
                       "/healthz", vmx_path, "chat", vmx_headers, env={"VMX_CONFIG": str(cfg)}, vmx=True)
        elif name == "portkey":
            t = Target(name, ["node", "--import", str(HERE / "portkey_preload.mjs"), str(peers.portkey_server()),
                              "--port={port}", "--headless"],
                       "/", "/v1/chat/completions", "gpt-4o-mini",
                       {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream,
                        "authorization": "Bearer sk-bench"},
                       env={"NODE_ENV": "production"}, cwd=peers.portkey_dir())
        elif name == "litellm":
            cfg = workdir / "litellm.yaml"
            cfg.write_text(yaml.safe_dump(configs.litellm_config(upstream)))
            t = Target(name, [str(peers.litellm_bin()), "--config", str(cfg), "--host", "127.0.0.1", "--port", "{port}",
                              "--num_workers", "1"],
                       "/health/liveliness", "/v1/chat/completions", "gpt-4o-mini",
                       {"authorization": f"Bearer {configs.LITELLM_KEY}"}, env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}, cwd=workdir)
        else:
            raise ValueError(f"unknown target {name!r}")
        made[name] = t
    return [made[n] for n in names]


ALL = ["direct", "floor", "vmx", "vmx-redis-postgres", "vmx-uvicorn", "portkey", "litellm"]
