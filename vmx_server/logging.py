"""The only place that configures logging: structlog JSON lines on stdout.

Every line is built from names, statuses and durations; request bodies and credentials are
never passed to a logger, so nothing here needs to scrub them.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

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
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
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
