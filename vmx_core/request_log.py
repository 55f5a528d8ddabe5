"""The canonical request log line: one ``info`` event ``request`` per request, through whatever
structlog configuration the process has (vmx_server's JSON lines, an embedder's own).

``log.info("request", **fields)`` hands the line's twenty-odd fields through three keyword
expansions before a processor sees them (the bound ``info``, ``_proxy_to_logger`` and the
``update(**kw)`` in ``_process_event``), each a new dict whose keys are compared one by one
against the callee's parameter names: about as much CPU as the processors and the JSON
rendering together (issue 9).  For the wrapper classes of ``make_filtering_bound_logger``
(vmx_server's configuration and structlog's default) :func:`log_request` does what their
``info`` does, minus those expansions, and builds no fields at all when ``info`` is filtered
out.  ``_process_event`` and ``_logger`` are the documented hooks for custom wrapper classes.
Any other wrapper class gets the plain ``info`` call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("vmx.request")

#: The filtering wrapper classes, by the least level they let through (structlog makes one
#: class per level and hands out the same one every time).
_FILTERING: dict[type, int] = {
    structlog.make_filtering_bound_logger(level): level
    for level in (logging.NOTSET, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}


def log_request(fields: Callable[[], dict[str, Any]]) -> None:
    """Log the ``request`` event with the fields ``fields()`` returns (called only when the
    event is logged); the same line as ``log.info("request", **fields())``."""
    # The configured logger: the same object every time once structlog caches it on first use.
    logger = log.bind()
    least = _FILTERING.get(type(logger))
    if least is None:
        logger.info("request", **fields())
        return
    if least > logging.INFO:
        return
    # As the filtering class's ``info`` -> ``_proxy_to_logger`` would, with ``fields`` as the
    # event's keywords (``_process_event`` copies them; the dict is not kept).
    try:
        args, kw = logger._process_event("info", "request", fields())
    except structlog.DropEvent:
        return
    logger._logger.info(*args, **kw)
