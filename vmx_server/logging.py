"""The only place that configures logging: structlog JSON lines on stdout.

Every line is built from names, statuses and durations; request bodies and credentials are
never passed to a logger, so nothing here needs to scrub them.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog


def configure(level: str = "info") -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=numeric)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            UtcTimeStamper(),
            structlog.processors.format_exc_info,
            # orjson renders straight to bytes: the canonical line per request is on the hot
            # path, and the stdlib json renderer was its largest cost in the profile (issue 9).
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=LineWriter.factory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )


class UtcTimeStamper:
    """structlog's ``TimeStamper(fmt="iso", utc=True)``: the same ``timestamp`` text
    (``2026-11-26T06:00:00.123456Z``; no fraction at a whole second, as ``isoformat``), with
    the part up to the second formatted once per second rather than per line (the canonical
    line per request is on the hot path, issue 9)."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        #: (second, its text): one attribute, swapped whole, so threads never see half of it.
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        second, micro = divmod(time.time_ns() // 1000, 1_000_000)
        cached_second, text = self._cached
        if second != cached_second:
            text = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._cached = (second, text)
        event_dict["timestamp"] = f"{text}.{micro:06d}Z" if micro else text + "Z"
        return event_dict


class LineWriter:
    """structlog's ``BytesLogger`` (one JSON line per event), writing the lines logged during one
    turn of the event loop with one system call at its end rather than one each: under load
    that turn finishes several requests, and each line's own ``write`` and ``flush`` cost more
    than rendering it (issue 9).  A line logged outside a running loop (start-up, the CLI,
    another thread) is written at once, after whatever is pending."""

    _lock = threading.Lock()

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._pending: list[bytes] = []
        #: The loop a flush is scheduled on (a loop closed before running it never will).
        self._scheduled: asyncio.AbstractEventLoop | None = None
        atexit.register(self.flush)

    @classmethod
    def factory(cls, file: BinaryIO) -> Callable[..., LineWriter]:
        writer = cls(file)
        return lambda *args: writer

    def msg(self, message: bytes) -> None:
        with self._lock:
            self._pending.append(message)
            loop = asyncio._get_running_loop()
            if loop is not None and loop is self._scheduled:
                return
            if loop is not None and self._scheduled is None:
                self._scheduled = loop
                loop.call_soon(self.flush)
                return
        self.flush()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg

    def flush(self) -> None:
        with self._lock:
            pending, self._pending, self._scheduled = self._pending, [], None
            if pending:
                pending.append(b"")
                self._file.write(b"\n".join(pending))
                self._file.flush()
