"""Real Redis servers for the tests: one instance and a 3-node Redis Cluster on loopback ports.

``redis-server`` comes from Debian's package (``make test`` installs it when missing).  The
session fixtures start what they need once and stop exactly what they started.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: How long a server may take to start answering, or a cluster to become ready.
READY_TIMEOUT_S = 20.0


def _can_bind(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster: bool = False) -> int:
    """A free loopback port (and, for a cluster node, a free bus port at +10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not cluster or (port + 10000 < 65536 and _can_bind(port + 10000)):
            return port
    raise RuntimeError("no free loopback port pair for a Redis Cluster node")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: `make test` installs it (apt-get install redis-server)")
    return path


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _poll(ready: object, what: str) -> None:
    # An external process's readiness cannot be awaited: poll it, bounded.
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready within {READY_TIMEOUT_S} s")
        time.sleep(0.02)


class RedisServer:
    """One ``redis-server`` process without persistence, restartable on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, cluster: bool = False) -> None:
        self.workdir = workdir
        self.cluster = cluster
        self.port = port or free_port(cluster)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            _binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
        ]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        log = self.workdir / f"redis-{self.port}.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:  # e.g. another program took the port meanwhile
                tail = log.read_text(errors="replace")[-500:]
                raise RuntimeError(f"redis-server on port {self.port} exited: {tail}")
            return _ping(self.port)

        _poll(ready, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class RedisCluster:
    """Three cluster-enabled servers joined by ``redis-cli --cluster create`` (no replicas)."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [RedisServer(workdir, cluster=True) for _ in range(3)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )
        self._wait_ok()

    def restart(self) -> None:
        """Start the stopped nodes again on their ports: each reads back its nodes-PORT.conf,
        so the same cluster (same slots) forms again, empty (nothing is persisted)."""
        for node in self.nodes:
            node.start()
        self._wait_ok()

    def _wait_ok(self) -> None:
        def ready() -> bool:
            for n in self.nodes:
                out = subprocess.run(
                    [_binary("redis-cli"), "-p", str(n.port), "cluster", "info"], capture_output=True, timeout=10
                ).stdout
                if b"cluster_state:ok" not in out:
                    return False
            return True

        _poll(ready, "the Redis Cluster")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A single Redis for the whole session."""
    with tempfile.TemporaryDirectory(prefix="vmx-redis-") as d:
        for attempt in range(3):  # as for the cluster: a port may be taken between find and bind
            server = RedisServer(Path(d))
            try:
                server.start()
                break
            except RuntimeError:
                server.stop()
                if attempt == 2:
                    raise
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A real 3-node Redis Cluster for the whole session."""
    with tempfile.TemporaryDirectory(prefix="vmx-redis-cluster-") as d:
        # Free ports are found, then bound by redis-server: another program on this machine
        # may take one in between.  A fresh set of ports is tried then (3 times at most).
        for attempt in range(3):
            cluster = RedisCluster(Path(d) / str(attempt))
            cluster.nodes[0].workdir.mkdir()
            try:
                cluster.start()
                break
            except (RuntimeError, subprocess.SubprocessError):
                cluster.stop()
                if attempt == 2:
                    raise
        try:
            yield cluster.url
        finally:
            cluster.stop()
