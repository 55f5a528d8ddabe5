"""A streamed answer's headers validated once by h11 instead of three times.

hypercorn speaks HTTP/1.1 through h11.  Sending a response whose length is unknown (every SSE
stream), h11 replaces two headers (``content-length`` removed, ``transfer-encoding: chunked``
set) with ``set_comma_header``, which rebuilds the whole header list and runs every header,
again, through the name and value regexes it already passed when the response was made.  With
the two dozen headers the contract puts on a vmx answer that was 124 regex matches per stream
(the floor: 29); validating once, a stream costs 0.486 → 0.470 ms CPU under load (issue 9,
docs/performance.md).

:func:`install` gives h11's connection module a ``set_comma_header`` that keeps the headers
already validated as they are and validates only the new values -- the same headers, in the
same order, and the same errors (``tests/test_h11_headers.py`` checks it against h11's own
function, with Hypothesis).  It touches h11's internals (``Headers._full_items``), so it is
installed only for the h11 versions it was checked against, and only by ``vmx serve``'s own
processes (``vmx serve``, ``vmx_server.asgi``): it is process-wide.
"""

from __future__ import annotations

import h11
from h11 import _connection, _headers

#: The h11 releases whose ``set_comma_header`` and ``Headers`` this was checked against.
CHECKED_VERSIONS = frozenset({"0.16.0"})

_original = _headers.set_comma_header


def set_comma_header(headers: _headers.Headers, name: bytes, new_values: list[bytes]) -> _headers.Headers:
    """h11's ``set_comma_header``: ``headers`` without ``name``, then ``name`` with each of
    ``new_values`` (title-cased, as h11 does), validated as h11 validates them.

    What h11 re-validates is already a ``Headers``: each item passed the name and value
    regexes, and normalisation leaves it unchanged (at most one ``content-length`` and one
    ``transfer-encoding``, already in their normal form), so only the new items need it."""
    kept = [item for item in headers._full_items if item[1] != name]
    if not new_values:
        return _headers.Headers(kept)
    title = name.title()
    added = _headers.normalize_and_validate([(title, value) for value in new_values])
    return _headers.Headers(kept + added._full_items)


def install() -> bool:
    """Use :func:`set_comma_header` in h11's connections, if this h11 is one it was checked
    against; True if it is in use."""
    if h11.__version__ not in CHECKED_VERSIONS or _connection.set_comma_header is not _original:
        return _connection.set_comma_header is set_comma_header
    _connection.set_comma_header = set_comma_header
    return True


def uninstall() -> None:
    """h11's own function again (tests)."""
    _connection.set_comma_header = _original
