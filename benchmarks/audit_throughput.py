"""Sustained audit write throughput of the built-in sink (queue -> batches -> store).

    .venv/bin/python benchmarks/audit_throughput.py [sqlite|postgres] [ROWS]

``postgres`` starts a throw-away PostgreSQL 15 (tests/services/postgres.py)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.audit.test_prices import record
from vmx_core.audit.prices import PriceTable
from vmx_core.audit.queue import QueueSink
from vmx_core.audit.spool import Spool
from vmx_core.audit.store import open_store


async def bench(uri: str, n: int, spool: Path) -> float:
    sink = QueueSink(open_store(uri), Spool.open(spool), max_queue=n + 1, pricer=PriceTable.load().cost)
    await sink.start()
    records = [record() for _ in range(n)]
    t = time.perf_counter()
    for i in range(0, n, 500):  # arrive in bursts, as finished requests would
        for r in records[i:i + 500]:
            sink.enqueue(r)
        await asyncio.sleep(0)  # let the writer run between bursts
    await sink.drained()
    elapsed = time.perf_counter() - t
    assert sink.counters.written == n, sink.stats()
    await sink.aclose()
    return n / elapsed


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    tmp = Path(tempfile.mkdtemp())
    if kind == "postgres":
        from tests.services.postgres import PostgresServer

        server = PostgresServer()
        server.init()
        server.start()
        try:
            rate = asyncio.run(bench(server.create_database(), n, tmp / "spool"))
        finally:
            server.cleanup()
    else:
        rate = asyncio.run(bench(f"sqlite:///{tmp}/bench.db", n, tmp / "spool"))
    print(f"{kind}: {n} rows, {rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
