"""Redis and PostgreSQL 15 for ``vmx-redis-postgres``, started the way the tests start them
(``tests/services/``: loopback ports, throw-away data, PostgreSQL as the ``postgres`` user)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The runner is started from the repository root (`python -m benchmarks.gateway.run`).
from tests.services.postgres import PostgresServer
from tests.services.redis import RedisServer


@contextlib.contextmanager
def stores(cpus: str) -> Iterator[tuple[str, str]]:
    """(redis URL, postgres URI), both pinned to ``cpus``: they are the gateway's databases,
    not the gateway, so they stay off its core and out of its CPU figure."""
    with tempfile.TemporaryDirectory(prefix="vmx-bench-redis-") as d:
        redis = RedisServer(Path(d))
        redis.start()
        pg = PostgresServer()
        try:
            pg.init()
            pg.start()
            for pid in (redis.proc.pid if redis.proc else None, _postmaster(pg)):
                if pid:
                    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=False,
                                   stdout=subprocess.DEVNULL)
            yield redis.url, pg.create_database()
        finally:
            pg.cleanup()
            redis.stop()


def _postmaster(pg: PostgresServer) -> int | None:
    pidfile = pg.data / "postmaster.pid"
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
