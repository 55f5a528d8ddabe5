"""The spool: an append-only local file that holds audit rows the database could not take.

Rows are written as JSON lines into *segments* (``spool-<ns>-<pid>.jsonl``).  Appending is one
``write`` syscall per batch (cheap enough for the request path when the queue overflows);
``fsync`` is batched by the writer task through :meth:`Spool.sync`.  Replay takes the segments
oldest first, so rows reach the database in the order they were spooled, and deletes a segment
only after all its rows were written.  Stores insert idempotently by row id, so a segment
replayed twice (a crash between the write and the delete) does not duplicate anything.

Several gateway processes may share one spool directory: each owns its active segment through
an exclusive ``flock``; a segment whose owner died is unlocked and is claimed (and replayed) by
the next process that looks.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import structlog
from attrs import define, field

from vmx_core.audit.rows import Row, dumps, loads

log = structlog.get_logger("vmx.audit")


@define
class _Segment:
    path: Path
    fd: int
    rows: int = 0


@define
class Spool:
    directory: Path
    _active: _Segment | None = None
    #: Closed segments waiting for replay, oldest first (all locked by this process).
    _claimed: list[_Segment] = field(factory=list)
    _dirty: bool = False
    _lock: threading.Lock = field(factory=threading.Lock)

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Spool:
        spool = cls(Path(directory))
        spool.directory.mkdir(parents=True, exist_ok=True)
        spool.claim_orphans()
        return spool

    # -- writing -----------------------------------------------------------------------------

    def append(self, rows: Sequence[Row]) -> None:
        """Append ``rows`` (one ``write``; durable after the next :meth:`sync`)."""
        if not rows:
            return
        data = b"".join(dumps(r) + b"\n" for r in rows)
        with self._lock:
            if self._active is None:
                self._active = self._new_segment()
            _write_all(self._active.fd, data)
            self._active.rows += len(rows)
            self._dirty = True

    async def sync(self) -> None:
        """fsync what was appended since the last call (in a thread: fsync may take ms)."""
        with self._lock:
            if not self._dirty or self._active is None:
                return
            self._dirty = False
            fd = self._active.fd
        await asyncio.to_thread(os.fsync, fd)

    def sync_blocking(self) -> None:
        with self._lock:
            if self._dirty and self._active is not None:
                os.fsync(self._active.fd)
            self._dirty = False

    # -- replay --------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        with self._lock:
            return bool(self._claimed) or (self._active is not None and self._active.rows > 0)

    def rotate(self) -> list[Path]:
        """Close the active segment; return every segment to replay, oldest first."""
        with self._lock:
            if self._active is not None:
                os.fsync(self._active.fd)
                self._claimed.append(self._active)
                self._active = None
                self._dirty = False
            return [s.path for s in self._claimed]

    def read(self, path: Path) -> Iterator[Row]:
        """The rows of one segment in order.  A torn last line (the process died inside a
        ``write``) is skipped: its row was never acknowledged as spooled."""
        with path.open("rb") as f:
            for n, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    log.warning("audit_spool_torn_line", segment=path.name, line=n)
                    break
                try:
                    yield loads(line)
                except ValueError:
                    log.warning("audit_spool_bad_line", segment=path.name, line=n)

    def remove(self, path: Path) -> None:
        """Delete a fully replayed segment."""
        with self._lock:
            for seg in self._claimed:
                if seg.path == path:
                    self._claimed.remove(seg)
                    path.unlink(missing_ok=True)
                    os.close(seg.fd)
                    return

    def claim_orphans(self) -> int:
        """Lock and adopt segments left by processes that are gone; returns how many."""
        owned = {s.path for s in self._claimed} | ({self._active.path} if self._active else set())
        found = 0
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            if path in owned:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:  # replayed and removed by another process meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live process owns it
                os.close(fd)
                continue
            if not path.exists():  # removed between our open and our lock
                os.close(fd)
                continue
            with self._lock:
                self._claimed.append(_Segment(path, fd, rows=-1))
            found += 1
        return found

    def close(self) -> None:
        """fsync and release every segment (they stay on disk for the next process)."""
        with self._lock:
            segments = [*self._claimed, *([self._active] if self._active else [])]
            for seg in segments:
                if seg is self._active:
                    os.fsync(seg.fd)
                os.close(seg.fd)
                if seg.rows == 0:
                    seg.path.unlink(missing_ok=True)
            self._claimed.clear()
            self._active = None

    def _new_segment(self) -> _Segment:
        # The nanosecond prefix orders segments across processes and restarts.
        path = self.directory / f"spool-{time.time_ns():020d}-{os.getpid()}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return _Segment(path, fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
