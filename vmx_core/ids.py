"""Request ids: UUIDv7 (RFC 9562), time-ordered so the audit tables' primary keys grow at the end.

A random (v4) id lands on a random page of the ``id`` B-tree: every audit batch then dirties
(and, in SQLite's WAL, writes and checkpoints) about one index page per row.  A v7 id starts
with the millisecond it was made, so a batch's ids fall on the last page or two.  It is still
a UUID (the ``uuid`` column, ``x-vmx-request-id``) and still unique across processes and
hosts: 74 of its bits come from the operating system's CSPRNG, fresh for every id.
"""

from __future__ import annotations

import os
import time

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_B = (1 << 62) - 1


def request_id(now_ms: int | None = None) -> str:
    """A new id for a request made at ``now_ms`` (Unix milliseconds; default: now)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | _VERSION | (rand >> 68) << 64 | _VARIANT | rand & _RAND_B
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
