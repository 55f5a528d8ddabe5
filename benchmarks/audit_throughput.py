"""What the built-in audit sink (queue -> batches -> store) costs: rows/s and CPU per row.

    .venv/bin/python benchmarks/audit_throughput.py [sqlite|postgres] [ROWS] [--rate R] [--reps N]
                                                    [--batch-wait-ms MS] [--gateway]

Without ``--rate`` records arrive in bursts of 500 as fast as the sink takes them: the
throughput ceiling, with an idle event loop and the largest batches.  With ``--rate R`` they
arrive R per second in 10 ms ticks while the event loop does synthetic request work for each
(pure Python plus four socket calls that drop the GIL, as a proxied request does), about 60%
of one core at R=1500: the batches are as small, and the writer thread competes for the GIL
as often, as in ``vmx serve`` under load.  Each repetition then also runs the same load with
no sink.  ``audit`` is the CPU the sink adds per row: the event-loop thread's CPU outside the
request work (less the same for the run without the sink) plus every other thread's (the SQLite
writer).  ``with interference`` is the whole process' CPU less the run without the sink: it
also counts how the audit slows the request work down (GIL hand-offs, caches), but on a shared
machine it is as noisy as its neighbours.

``--gateway`` sends ROWS requests instead through a whole in-process gateway (16 clients, an
instant fake provider, each request yielding to the loop once as a served one does on its
socket I/O): the event loop is saturated, as under a closed-loop load.  ``audit`` is then the
process CPU per request with the store less the same with ``storage.audit: none``; rows the
sink had to spool (a writer that could not keep up) are counted.

CPU is ``time.process_time`` / ``time.thread_time``; the database server's own CPU (the Postgres
backend) is not counted.  Ids come from the gateway's own request-id factory.  ``postgres``
starts a throw-away PostgreSQL 15 (tests/services/postgres.py, fsync=off).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import attrs
import orjson
import structlog
from attrs import define

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmx_core import ClientRequest, Format
from vmx_core.audit.prices import PriceTable
from vmx_core.audit.queue import QueueSink
from vmx_core.audit.record import Attempt, AuditRecord
from vmx_core.audit.spool import Spool
from vmx_core.audit.store import open_store
from vmx_core.pipeline.context import RequestContext
from vmx_core.testing import TEST_KEY, FakeProvider, make_test_gateway

#: A request of benchmarks/gateway's shape: a correlation id and metadata in the envelope.
BODY = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello " * 50}],
                     "vmx": {"correlationId": "bench-correlation-0001", "metadata": {"team": "perf", "app": "bench"}}})
#: Seconds between two arrivals of records in paced mode.
TICK = 0.01
#: Synthetic request work per row in paced mode: Python-level iterations (about 0.4 ms here).
WORK = 17_000


def new_request_id() -> str:
    factory = attrs.fields(RequestContext).request_id.default.factory  # type: ignore[union-attr]
    return str(factory())


def record() -> AuditRecord:
    """A record shaped like those of benchmarks/gateway's vmx config: one attempt, metadata,
    a correlation id, a key, a source address."""
    now = dt.datetime.now(dt.UTC)
    return AuditRecord(
        id=uuid.UUID(new_request_id()), timestamp=now, workspace="acme", environment="prod", resource="chat",
        connection="up", provider="openai", model="gpt-4o-mini", api_key_id="bench", format="chat-completions",
        stream=False, status_code=200, error_code=None, error_message=None,
        attempts=(Attempt("up", "openai", "gpt-4o-mini", 200, None, 1.234567),), routing_rule=None,
        correlation_id="bench-correlation-0001", metadata={"team": "perf", "app": "bench"}, prompt_tokens=63,
        completion_tokens=21, total_tokens=84, cached_tokens=0, cache_creation_tokens=None,
        reasoning_tokens=0, cost=None, duration_ms=2.345678, ttft_ms=None, upstream_ms=1.234567,
        gate_ms=0.123456, routing_ms=0.012345, source_ip="127.0.0.1",
        stages={"auth": 0.01, "gate": 0.123456, "routing": 0.012345},
    )


class Work:
    """Stands in for the requests the event loop serves between audit batches; ``cpu`` is the
    event-loop thread's CPU spent inside them."""

    def __init__(self) -> None:
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.b.setblocking(False)
        self.cpu = 0.0

    def request(self) -> int:
        t = time.thread_time()
        x = 0
        for i in range(WORK):
            x += i & 7
        for _ in range(2):  # client in, upstream out / upstream in, client out
            self.a.send(b"x" * 512)
            self.b.recv(4096)
        self.cpu += time.thread_time() - t
        return x

    def close(self) -> None:
        self.a.close()
        self.b.close()


@define
class Meter:
    """CPU over one run, in microseconds per row: the process, the event-loop thread, and the
    loop's share inside the synthetic request work."""

    rows: int
    cpu: float = 0.0
    loop: float = 0.0
    work: float = 0.0
    wall: float = 0.0

    def __enter__(self) -> Meter:
        self.cpu, self.loop, self.wall = time.process_time(), time.thread_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        per_row = 1e6 / self.rows
        self.cpu = (time.process_time() - self.cpu) * per_row
        self.loop = (time.thread_time() - self.loop) * per_row
        self.wall = time.perf_counter() - self.wall


async def paced(records: list[AuditRecord], rate: float, enqueue: Callable[[AuditRecord], None]) -> float:
    """``rate`` records per second, each after its request's work, on a fixed schedule; returns
    the CPU seconds spent in that work."""
    work, per_tick = Work(), max(1, round(rate * TICK))
    start = time.perf_counter()
    try:
        for n, i in enumerate(range(0, len(records), per_tick)):
            for r in records[i:i + per_tick]:
                work.request()
                enqueue(r)
            await asyncio.sleep(max(0.0, start + (n + 1) * TICK - time.perf_counter()))
    finally:
        work.close()
    return work.cpu


async def run(uri: str | None, n: int, rate: float | None, spool: Path, batch_wait_ms: int = 25) -> Meter:
    """One run: ``uri`` None is the paced load alone, what the audit runs are measured against."""
    records = [record() for _ in range(n)]
    if uri is None:
        with Meter(n) as m:
            work = await paced(records, rate or 0.0, lambda r: None)
        m.work = work * 1e6 / n
        return m
    sink = QueueSink(open_store(uri), Spool.open(spool), max_queue=n + 1, pricer=PriceTable.load().cost,
                     batch_wait=batch_wait_ms / 1000)
    await sink.start()
    work = 0.0
    with Meter(n) as m:
        if rate is None:
            for i in range(0, n, 500):  # arrive in bursts, as finished requests would
                for r in records[i:i + 500]:
                    sink.enqueue(r)
                await asyncio.sleep(0)  # let the writer run between bursts
        else:
            work = await paced(records, rate, sink.enqueue)
        await sink.drained()
    m.work = work * 1e6 / n
    assert sink.counters.written == n, sink.stats()
    await sink.aclose()
    return m


async def gateway(uri: str, n: int) -> tuple[float, int]:
    """Process CPU per request (µs) for ``n`` requests through an in-process gateway with
    ``storage.audit`` = ``uri`` (16 clients, an instant fake provider), and the rows spooled."""
    async with make_test_gateway(FakeProvider(), audit=uri) as gw:

        async def serve(count: int) -> None:
            todo = iter(range(count))

            async def client() -> None:
                for _ in todo:
                    await gw.handle(ClientRequest(Format.CHAT_COMPLETIONS, "test", "test", BODY, TEST_KEY))
                    await asyncio.sleep(0)  # a served request yields to the loop on its socket I/O

            await asyncio.gather(*(client() for _ in range(16)))

        await serve(n // 4)  # warm-up: caches, and a table that is not empty
        cpu = time.process_time()
        await serve(n)
        sinks = [s for s in gw.sinks if isinstance(s, QueueSink)]
        for sink in sinks:
            await sink.drained()
        cpu = time.process_time() - cpu
    return cpu / n * 1e6, sum(s.counters.spooled for s in sinks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", nargs="?", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("rows", nargs="?", type=int, default=50_000)
    ap.add_argument("--rate", type=float, help="paced arrivals per second, with request work on the loop")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--batch-wait-ms", type=int, default=25, help="audit.batch_wait_ms (default 25)")
    ap.add_argument("--gateway", action="store_true", help="ROWS requests through an in-process gateway instead")
    args = ap.parse_args()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # no request log lines
    tmp = Path(tempfile.mkdtemp())
    server = None
    if args.kind == "postgres":
        from tests.services.postgres import PostgresServer

        server = PostgresServer()
        server.init()
        server.start()
    costs: list[float] = []
    totals: list[float] = []
    try:
        for rep in range(args.reps):
            uri = server.create_database() if server else f"sqlite:///{tmp}/bench{rep}.db"
            if args.gateway:
                without, _ = asyncio.run(gateway("none", args.rows))
                with_audit, spooled = asyncio.run(gateway(uri, args.rows))
                costs.append(with_audit - without)
                print(f"{args.kind} gateway: {args.rows} requests, audit {costs[-1]:.1f} us/request CPU"
                      f" ({with_audit:.1f} with, {without:.1f} without), {spooled} rows spooled", flush=True)
                continue
            m = asyncio.run(run(uri, args.rows, args.rate, tmp / f"spool{rep}", args.batch_wait_ms))
            if args.rate is None:
                costs.append(m.cpu)
                print(f"{args.kind} burst: {args.rows} rows, {args.rows / m.wall:,.0f} rows/s,"
                      f" {m.cpu:.1f} us/row CPU (loop {m.loop:.1f}, other threads {m.cpu - m.loop:.1f})", flush=True)
                continue
            base = asyncio.run(run(None, args.rows, args.rate, tmp / "unused"))
            # Outside the request work the audit run's loop did the audit; the bare run's loop
            # only the pacing.  Inside it, the audit shows only as interference (the GIL, the
            # caches, the other core): measured too, but as noisy as the machine.
            loop = (m.loop - m.work) - (base.loop - base.work)
            costs.append(loop + m.cpu - m.loop)
            totals.append(m.cpu - base.cpu)
            print(f"{args.kind} paced at {args.rate:,.0f}/s: {args.rows} rows, audit {costs[-1]:.1f} us/row CPU"
                  f" (loop {loop:.1f}, other threads {m.cpu - m.loop:.1f}); with interference {totals[-1]:.1f}",
                  flush=True)
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.reps > 1:
        unit = "request" if args.gateway else "row"
        line = f"{args.kind}: median {statistics.median(costs):.1f} us/{unit} over {args.reps} runs"
        line += f" (min {min(costs):.1f}, max {max(costs):.1f})"
        if totals:
            line += f"; with interference {statistics.median(totals):.1f}"
        print(line)


if __name__ == "__main__":
    main()
