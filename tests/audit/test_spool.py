"""The spool: append-only segments, replay order, torn lines, orphaned segments."""

from __future__ import annotations

import os
from pathlib import Path

from tests.audit.conftest import make_row
from vmx_core.audit.spool import Spool


async def test_rows_come_back_in_append_order_across_segments(tmp_path: Path) -> None:
    """Segments replay oldest first and rows within a segment in append order."""
    spool = Spool.open(tmp_path)
    rows = [make_row() for _ in range(5)]
    spool.append(rows[:2])
    await spool.sync()
    first = spool.rotate()
    spool.append(rows[2:])
    segments = spool.rotate()
    assert len(first) == 1 and len(segments) == 2
    read = [r for seg in segments for r in spool.read(seg)]
    assert [r["id"] for r in read] == [r["id"] for r in rows]
    for seg in segments:
        spool.remove(seg)
    assert not spool.pending
    assert not any(p.name.startswith("spool-") for p in os.scandir(tmp_path))
    spool.close()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    """A line cut by a crash mid-write is dropped; the complete lines before it survive."""
    spool = Spool.open(tmp_path)
    rows = [make_row(), make_row()]
    spool.append(rows)
    [seg] = spool.rotate()
    with seg.open("ab") as f:
        f.write(b'{"id": "half')
    assert [r["id"] for r in spool.read(seg)] == [r["id"] for r in rows]
    spool.close()


def test_segments_of_a_dead_process_are_claimed_not_those_of_a_live_one(tmp_path: Path) -> None:
    """A segment locked by a live spool is left alone; once released, another spool adopts it."""
    owner = Spool.open(tmp_path)
    owner.append([make_row()])
    other = Spool.open(tmp_path)
    assert not other.pending
    owner.close()  # the owner exits: its segment stays on disk, unlocked
    assert other.claim_orphans() == 1
    [seg] = other.rotate()
    assert len(list(other.read(seg))) == 1
    other.close()
