"""Record to row: the same row whatever shortcut the conversion takes."""

from __future__ import annotations

import datetime as dt
import math
import struct
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.audit.test_prices import record
from vmx_core.audit.record import Attempt
from vmx_core.audit.rounding import round_to
from vmx_core.audit.rows import COLUMNS, column_values, iso, may_hold_nul, to_row, uuid_text

#: Text that often holds NUL, and sometimes the six characters \u0000 that JSON escapes it to.
TEXT = st.lists(st.sampled_from(["a", "\x00", "\\", "u0000", "\ufffd", "é"]), max_size=8).map("".join)


def _safe(text: str) -> str:
    return text.replace("\x00", "\ufffd")


@settings(max_examples=300, deadline=None)
@given(workspace=TEXT, error=st.none() | TEXT, metadata=st.dictionaries(TEXT, TEXT, max_size=3),
       message=st.none() | TEXT)
def test_every_nul_is_replaced_and_nothing_else_changes(workspace: str, error: str | None,
                                                        metadata: dict[str, str], message: str | None) -> None:
    """NUL becomes U+FFFD in strings, keys and attempts; every other character, the literal text
    \\u0000 included, is kept as it was."""
    attempt = Attempt("c", "openai", "m", 200, None, 1.0, message=message)
    row = to_row(record(workspace=workspace, error_message=error, metadata=metadata, attempts=(attempt,)))
    assert row["workspace"] == _safe(workspace)
    assert row["error_message"] == (None if error is None else _safe(error))
    assert row["metadata"] == {_safe(k): _safe(v) for k, v in metadata.items()}
    assert row["attempts"][0]["message"] == (None if message is None else _safe(message))


def test_a_row_holds_every_column_with_plain_values() -> None:
    """The row has the table's columns, its id and time as text, durations to the microsecond."""
    r = record(duration_ms=1.23456789, metadata={"team": "a"})
    row = to_row(r, cost=0.5)
    assert tuple(row) == COLUMNS
    assert (row["id"], row["timestamp"]) == (str(r.id), iso(r.timestamp))
    assert (row["duration_ms"], row["cost"], row["metadata"], row["attempts"]) == (1.235, 0.5, {"team": "a"}, [])


def test_iso_is_utc_to_the_microsecond_in_fixed_width() -> None:
    """Any zone is shown in UTC, with six fractional digits even when they are zero."""
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert iso(dt.datetime(2026, 1, 2, 1, 30, tzinfo=plus2)) == "2026-01-01T23:30:00.000000Z"
    assert iso(dt.datetime(2026, 11, 25, 22, 6, 16, 95744, tzinfo=dt.UTC)) == "2026-11-25T22:06:16.095744Z"


@settings(max_examples=300, deadline=None)
@given(when=st.datetimes(timezones=st.just(dt.UTC)) | st.datetimes(timezones=st.timezones()))
def test_iso_takes_the_same_text_whichever_way_it_goes(when: dt.datetime) -> None:
    """orjson's text for a UTC time with microseconds is isoformat's; any other time goes that way."""
    expected = when.astimezone(dt.UTC).isoformat(timespec="microseconds")[:-6] + "Z"
    assert iso(when) == expected and len(expected) == 27


def test_uuid_text_is_str_even_for_a_subclass() -> None:
    """A UUID subclass, which orjson refuses, still gets its own text."""

    class Mine(uuid.UUID):
        pass

    for value in (uuid.uuid4(), Mine(int=12345)):
        assert uuid_text(value) == str(value)


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


@settings(max_examples=2000, deadline=None)
@given(value=st.floats(allow_nan=False) | st.floats(0, 1e6) | st.integers(0, 10**9).map(lambda k: (k + 0.5) / 1000)
       | st.integers(0, 2**30).map(lambda k: k / 1024), digits=st.sampled_from([3, 10]))
def test_round_to_is_round_to_the_bit(value: float, digits: int) -> None:
    """Exact halves, values a rounding error away from one, zeros of either sign, huge and tiny
    values: the same float as round()."""
    assert _bits(round_to(value, digits)) == _bits(round(value, digits))


def test_round_to_keeps_what_round_keeps() -> None:
    """An int stays an int, NaN and infinities stay themselves."""
    assert round_to(5, 3) == 5 and type(round_to(5, 3)) is int
    assert math.isnan(round_to(math.nan, 3)) and round_to(math.inf, 3) == math.inf
    assert _bits(round_to(-0.0, 3)) == _bits(-0.0) and _bits(round_to(-0.0001, 3)) == _bits(-0.0)


def test_column_values_drop_nul_and_fill_missing_columns() -> None:
    """Values come in table order; NUL is dropped (a row from elsewhere than to_row) and a
    column missing from an older spooled row is None."""
    row: dict[str, Any] = to_row(record(error_message="x"))
    row["error_message"], row["metadata"] = "a\x00b", {"k\x00": ["v\x00"]}
    del row["source_ip"]
    values = column_values(row)
    assert values[COLUMNS.index("error_message")] == "ab"
    assert values[COLUMNS.index("metadata")] == {"k": ["v"]}
    assert values[COLUMNS.index("source_ip")] is None
    assert values[COLUMNS.index("workspace")] == "w"


def test_a_key_that_is_not_a_string_takes_the_slow_way_to_the_same_row() -> None:
    """may_hold_nul's one-pass encoding refuses keys that are not strings; the scan that takes
    over then keeps such keys as they are and still replaces (or drops) every NUL."""
    assert may_hold_nul({1: "a"}) is True and may_hold_nul({"k": "a"}) is False
    row = to_row(record(metadata={7: "v\x00", "k": "w"}))
    assert row["metadata"] == {7: "v\ufffd", "k": "w"}
    row["error_message"] = "a\x00b"
    values = column_values(row)
    assert values[COLUMNS.index("metadata")] == {7: "v\ufffd", "k": "w"}
    assert values[COLUMNS.index("error_message")] == "ab"
