"""The built-in audit sink: a bounded in-memory queue and one batching writer task.

The request path only calls :meth:`QueueSink.enqueue` (``put_nowait``; no I/O, no await).  When
the queue is full the record goes straight to the spool instead of being dropped.  The writer
takes whatever is queued (at most ``batch_size``) in one go, so batches grow by themselves
under load and a lone request is written at once; a failed write spools its batch and the
writer retries the database with a capped backoff, replaying the spool before writing new rows
directly again.  :meth:`aclose` drains the queue, writes or spools every row, and fsyncs.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import structlog
from attrs import define, field

from vmx_core.audit.metrics import AuditCounters
from vmx_core.audit.payload import payload_json
from vmx_core.audit.record import AuditRecord
from vmx_core.audit.redact import Redactor
from vmx_core.audit.rows import Row, to_row
from vmx_core.audit.spool import Spool
from vmx_core.audit.store import AuditStore
from vmx_core.errors import AuditStoreError

log = structlog.get_logger("vmx.audit")

Pricer = Callable[[AuditRecord], float | None]

_STOP = object()
#: Rows converted between two yields to the event loop.
_CONVERT_CHUNK = 100


@define
class QueueSink:
    store: AuditStore
    spool: Spool
    name: str = "vmx.audit"
    max_queue: int = 10_000
    batch_size: int = 2_000
    #: After the first row of a batch, how long the writer lets more arrive (seconds).  Under
    #: moderate load this turns one transaction per request into one per few dozen, which is
    #: what keeps the writer's share of the event loop (and so request latency) unmeasurable.
    batch_wait: float = 0.025
    pricer: Pricer | None = None
    retention_days: int | None = None
    #: Set when ``audit.payloads`` is ``redacted`` or ``full``: bodies are stored through it.
    redactor: Redactor | None = None
    #: Backoff between database retries while it is down (seconds).
    retry_min: float = 0.2
    retry_max: float = 5.0
    counters: AuditCounters = field(factory=AuditCounters)
    #: Records (and the stop marker) for the writer.  A deque, not an ``asyncio.Queue``: that
    #: costs half a dozen Python calls per record to put and take, and the writer, the only
    #: consumer, needs no more than a wake-up when it waits on an empty queue.
    _queue: collections.deque[Any] = field(factory=collections.deque)
    #: Set while the writer waits for the queue's first record: the next one completes it.
    _wakeup: asyncio.Future[None] | None = None
    _task: asyncio.Task[None] | None = None
    _retry_at: float = 0.0
    _backoff: float = 0.0
    #: Records put on the queue and not yet written or spooled.
    _inflight: int = 0
    _idle: asyncio.Event = field(factory=asyncio.Event)

    # -- the request path ----------------------------------------------------------------------

    def enqueue(self, record: AuditRecord) -> None:
        self.counters.queued += 1
        # The queue itself is unbounded so the stop marker always fits; the bound is ours.
        if len(self._queue) >= self.max_queue or self._task is None:
            self._spool([self._row(record)])
            return
        self._inflight += 1
        self._idle.clear()
        self._put(record)

    def _put(self, item: Any) -> None:
        self._queue.append(item)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.connect()
        except AuditStoreError as exc:
            # Start anyway: rows spool until the database is back (the writer retries).
            log.warning("audit_store_unavailable", error=str(exc))
            self._retry_at = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="vmx-audit-writer")

    async def aclose(self) -> None:
        """Write (or spool) everything queued, fsync the spool, close the store."""
        task, self._task = self._task, None
        if task is not None:
            self._put(_STOP)
            await task
        await self.spool.sync()
        self.spool.close()
        await self.store.aclose()

    async def drained(self) -> None:
        """Wait until every enqueued row is written or spooled (tests, benchmarks)."""
        if self._inflight:
            await self._idle.wait()

    def stats(self) -> dict[str, int]:
        return {**self.counters.as_dict(), "queue_depth": len(self._queue)}

    # -- the writer task -----------------------------------------------------------------------

    async def _run(self) -> None:
        stopping = False
        last_retention = 0.0
        while True:
            batch, stopping = await self._take(stopping)
            if batch:
                await self._write(batch)
                self._inflight -= len(batch)
            # Shutting down, the spool gets one last replay even inside a backoff pause.
            if self.spool.pending and (stopping or time.monotonic() >= self._retry_at):
                await self._replay()
            await self.spool.sync()
            if self._inflight == 0:
                self._idle.set()
            if self.retention_days and time.monotonic() - last_retention > 3600 and not self._down:
                last_retention = time.monotonic()
                await self._retention()
            if stopping and not self._queue:
                return

    @property
    def _down(self) -> bool:
        return self._backoff > 0

    async def _take(self, stopping: bool) -> tuple[list[Row], bool]:
        queue = self._queue
        if not queue and not stopping:
            timeout = max(0.0, self._retry_at - time.monotonic()) if self.spool.pending else None
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._wakeup, timeout)
            except TimeoutError:  # time to retry the database
                return [], stopping
            finally:
                self._wakeup = None
            if self.batch_wait > 0 and queue[0] is not _STOP and len(queue) < self.batch_size:
                await asyncio.sleep(self.batch_wait)
        items = [queue.popleft() for _ in range(min(len(queue), self.batch_size))]
        rows = []
        for n, item in enumerate(items):
            if item is _STOP:
                stopping = True
            else:
                rows.append(self._row(item))
            if n % _CONVERT_CHUNK == _CONVERT_CHUNK - 1:
                # A full batch is thousands of rows to convert and price: let requests run
                # between chunks instead of holding the event loop for tens of milliseconds.
                await asyncio.sleep(0)
        return rows, stopping

    async def _write(self, rows: list[Row]) -> None:
        if self.spool.pending or self._down:
            # Keep order: while older rows wait in the spool, new ones queue up behind them.
            self._spool(rows)
            return
        try:
            await self.store.write(rows)
        except AuditStoreError as exc:
            self._failed(exc)
            self._spool(rows)
            return
        self.counters.written += len(rows)

    async def _replay(self) -> None:
        try:
            for path in self.spool.rotate():
                chunk: list[Row] = []
                for row in self.spool.read(path):
                    chunk.append(row)
                    if len(chunk) >= self.batch_size:
                        await self.store.write(chunk)
                        self.counters.replayed += len(chunk)
                        chunk = []
                if chunk:
                    await self.store.write(chunk)
                    self.counters.replayed += len(chunk)
                self.spool.remove(path)
        except AuditStoreError as exc:
            self._failed(exc)
            return
        if self._down:
            log.info("audit_store_recovered", replayed=self.counters.replayed)
        self._backoff = 0.0

    async def _retention(self) -> None:
        assert self.retention_days is not None
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.retention_days)
        try:
            await self.store.drop_older_than(cutoff)
        except AuditStoreError as exc:
            log.warning("audit_retention_failed", error=str(exc))

    def _failed(self, exc: AuditStoreError) -> None:
        if not self._down:
            log.warning("audit_store_down", error=str(exc))
        self._backoff = min(self.retry_max, max(self.retry_min, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff

    def _spool(self, rows: list[Row]) -> None:
        self.spool.append(rows)
        self.counters.spooled += len(rows)

    def _row(self, record: AuditRecord) -> Row:
        cost = None
        if self.pricer is not None:
            try:
                cost = self.pricer(record)
            except Exception:  # a pricing bug must never lose the row itself
                log.exception("audit_pricing_failed")
        row = to_row(record, cost)
        if record.payload is not None and self.redactor is not None:
            try:
                row["payload"] = payload_json(record.payload, self.redactor)
            except Exception:  # nor may a redaction bug; the bodies are dropped, never stored raw
                log.exception("audit_payload_failed")
        return row
