"""Request ids: UUIDv7 (RFC 9562), time-ordered so the audit tables' primary keys grow at the end.

A random (v4) id lands on a random page of the ``id`` B-tree: every audit batch then dirties
(and, in SQLite's WAL, writes and checkpoints) about one index page per row.  A v7 id starts
with the millisecond it was made, so a batch's ids fall on the last page or two.  It is still
a UUID (the ``uuid`` column, ``x-vmx-request-id``) and still unique across processes and
hosts: 74 of its bits come from the operating system's CSPRNG, fresh for every id.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

#: The variant nibble (0b10 and two random bits) for a random hex digit: its low two bits.
_VARIANT_NIBBLE = {f"{i:x}": "89ab"[i & 3] for i in range(16)}
#: Looked up once: an enum member costs 0.14 µs to reach through its class.
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


class _Entropy(threading.local):
    """CSPRNG bytes read from the OS a page at a time and handed out 10 at a time, each byte
    to one id only: a ``getrandom`` call per request cost more than the rest of the id."""

    def __init__(self) -> None:
        self.buffer = b""
        self.used = 0


_entropy = _Entropy()
_PAGE = 4000  # 400 ids


def _random_hex() -> str:
    """20 random hex digits, never handed out before (in this process or its parent)."""
    e = _entropy
    used = e.used
    if used + 10 > len(e.buffer):
        e.buffer, used = os.urandom(_PAGE), 0
    e.used = used + 10
    return e.buffer[used : used + 10].hex()


def _forget_entropy() -> None:
    # A forked child must not hand out the bytes its parent will hand out too.
    _entropy.buffer, _entropy.used = b"", 0


os.register_at_fork(after_in_child=_forget_entropy)


def request_id(now_ms: int | None = None) -> str:
    """A new id for a request made at ``now_ms`` (Unix milliseconds; default: now)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    # Built as text from 20 random hex digits rather than as a 128-bit integer formatted back:
    # the same layout at a third of the cost (it is made for every request, issue 9).
    r = _random_hex()
    t = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
    # unix_ts_ms (48 bits) - version 7 + rand_a (12 bits) - variant 0b10 + rand_b (62 bits)
    return f"{t[:8]}-{t[8:]}-7{r[:3]}-{_VARIANT_NIBBLE[r[3]]}{r[4:7]}-{r[7:19]}"


def as_uuid(text: str) -> uuid.UUID:
    """``uuid.UUID(text)``, at half the cost when ``text`` is 32 hex digits and hyphens (every id
    vmx makes): ``UUID()`` first tells apart five ways to be called and strips URN prefixes and
    braces."""
    digits = text.replace("-", "")
    if len(digits) != 32:  # braces, a URN, or no UUID: UUID's own parsing, or its error
        return uuid.UUID(text)
    # What UUID() stores, as it stores it (immutable, hence object.__setattr__); a digit that is
    # not hex raises ValueError from int() as it would from UUID().
    value = object.__new__(uuid.UUID)
    object.__setattr__(value, "int", int(digits, 16))
    object.__setattr__(value, "is_safe", _UNKNOWN_SAFETY)
    return value
