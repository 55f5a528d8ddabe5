"""The request body and the `vmx` envelope (DESIGN §4): types, header fallbacks, echoes, limits."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vmx_core.errors import InvalidRequest, RequestTooLarge
from vmx_core.request import (
    Envelope,
    check_common_fields,
    header_value,
    metadata_headers,
    parse_body,
    parse_envelope,
)
from vmx_core.wire.formats import Format

SETTINGS = settings(max_examples=200, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
# Everything JSON can hold, plus the NaN/inf floats Python callers could pass in a dict body.
any_value = json_values | st.sampled_from([math.nan, math.inf, -math.inf])
UNSAFE = "\r\n\x00"


def _is_positive_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0


VALID = {
    "correlationId": lambda v: isinstance(v, str),
    "metadata": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
    "timeoutMs": _is_positive_number,
    "providerArgs": lambda v: isinstance(v, dict),
    "secondaryModelIndex": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "resourceConfigOverrides": lambda v: isinstance(v, dict),
}


@SETTINGS
@given(st.sampled_from(sorted(VALID)), any_value)
def test_wrong_typed_field_names_its_path(field: str, value: Any) -> None:
    """Any wrong-typed envelope field is a 400 whose message and param name `vmx.<field>`."""
    assume(value is not None and not VALID[field](value))
    with pytest.raises(InvalidRequest) as exc:
        parse_envelope({field: value}, {})
    assert exc.value.status == 400
    assert exc.value.param is not None and exc.value.param.startswith(f"vmx.{field}")
    assert exc.value.message.startswith(f"vmx.{field}")


GOOD = {
    "correlationId": st.text(max_size=300),
    "metadata": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    "timeoutMs": st.integers(1, 10**9) | st.floats(min_value=1e-3, max_value=1e9),
    "providerArgs": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    "secondaryModelIndex": st.integers(0, 100),
    "resourceConfigOverrides": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
}


@SETTINGS
@given(st.data())
def test_well_typed_field_is_accepted(data: st.DataObject) -> None:
    """A well-typed envelope field parses and lands in its Envelope attribute."""
    field = data.draw(st.sampled_from(sorted(GOOD)))
    value = data.draw(GOOD[field])
    assert VALID[field](value)
    env = parse_envelope({field: value}, {})
    expected = {
        "correlationId": ("correlation_id", _strip(value)[:256] if isinstance(value, str) else None),
        "metadata": ("metadata", value),
        "timeoutMs": ("timeout_ms", value),
        "providerArgs": ("provider_args", value),
        "secondaryModelIndex": ("secondary_model_index", value),
        "resourceConfigOverrides": ("resource_overrides", value),
    }[field]
    assert getattr(env, expected[0]) == expected[1]


def test_bad_metadata_value_names_its_key() -> None:
    """A non-string metadata value is reported as `vmx.metadata.KEY`."""
    with pytest.raises(InvalidRequest) as exc:
        parse_envelope({"metadata": {"team": "a", "cost": 3}}, {})
    assert exc.value.param == "vmx.metadata.cost"


@SETTINGS
@given(st.text(min_size=1).filter(lambda k: k not in VALID), json_values)
def test_unknown_field_is_named(field: str, value: Any) -> None:
    """An unknown envelope field is a 400 naming `vmx.<field>`."""
    with pytest.raises(InvalidRequest) as exc:
        parse_envelope({field: value, "correlationId": "c"}, {})
    assert exc.value.param == f"vmx.{field}"


@SETTINGS
@given(json_values.filter(lambda v: v is not None and not isinstance(v, dict)))
def test_envelope_must_be_an_object(value: Any) -> None:
    """`vmx` that is not an object is a 400 with param `vmx`."""
    with pytest.raises(InvalidRequest) as exc:
        parse_envelope(value, {})
    assert exc.value.param == "vmx"


def test_null_fields_mean_absent() -> None:
    """`null` for any field (or for `vmx` itself) is the same as leaving it out; headers still apply."""
    headers = {"x-vmx-correlation-id": "from-header"}
    assert parse_envelope(dict.fromkeys(VALID), headers) == Envelope(correlation_id="from-header")
    assert parse_envelope(None, {}) == Envelope()


def test_valid_envelope_is_read_in_full() -> None:
    """Every field lands in the Envelope, with timeoutMs as a float and index 0 kept."""
    env = parse_envelope(
        {"correlationId": "c-1", "metadata": {"team": "a"}, "timeoutMs": 1500, "providerArgs": {"seed": 1},
         "secondaryModelIndex": 0, "resourceConfigOverrides": {"default_args": {"temperature": 0}}},
        {},
    )
    assert env == Envelope("c-1", {"team": "a"}, 1500.0, {"seed": 1}, 0, {"default_args": {"temperature": 0}})
    assert type(env.timeout_ms) is float


header_key = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)
meta = st.dictionaries(header_key, st.text(max_size=8), max_size=4)


@SETTINGS
@given(meta, meta, st.none() | st.text(max_size=10), st.none() | st.text(max_size=10))
def test_headers_are_fallbacks_body_wins(
    header_meta: dict[str, str], body_meta: dict[str, str], header_corr: str | None, body_corr: str | None
) -> None:
    """Header metadata and the body's are unioned with the body winning; the body's correlation id wins."""
    headers = {f"x-vmx-metadata-{k}": v for k, v in header_meta.items()}
    if header_corr is not None:
        headers["x-vmx-correlation-id"] = header_corr
    raw: dict[str, Any] = {"metadata": body_meta}
    if body_corr is not None:
        raw["correlationId"] = body_corr
    env = parse_envelope(raw, headers)
    expected_meta = {k: _strip(v) for k, v in header_meta.items()} | body_meta
    assert env.metadata == expected_meta
    corr = body_corr if body_corr is not None else header_corr
    assert env.correlation_id == (None if corr is None else _strip(corr)[:256])


def _strip(value: str) -> str:
    return "".join(c for c in value if c not in UNSAFE)


@SETTINGS
@given(st.text(), st.sampled_from(["body", "header"]))
def test_correlation_id_is_stripped_and_capped(value: str, source: str) -> None:
    """The correlation id has CR, LF and NUL removed and is at most 256 characters."""
    raw = {"correlationId": value} if source == "body" else {}
    headers = {"x-vmx-correlation-id": value} if source == "header" else {}
    corr = parse_envelope(raw, headers).correlation_id
    assert corr is not None and not set(corr) & set(UNSAFE)
    assert corr == _strip(value)[:256]


def test_empty_metadata_header_suffix_is_ignored() -> None:
    """A bare `x-vmx-metadata-` header carries no key and is ignored."""
    assert parse_envelope(None, {"x-vmx-metadata-": "v", "x-other": "w"}).metadata == {}


@SETTINGS
@given(st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5))
def test_metadata_echo_headers_are_safe(metadata: dict[str, str]) -> None:
    """Echo headers have `[a-z0-9_-]` keys and values without control characters, encodable as Latin-1."""
    out = metadata_headers(metadata)
    for name, value in out.items():
        suffix = name.removeprefix("x-vmx-metadata-")
        assert suffix and set(suffix) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-")
        assert not any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in value)
        value.encode("latin-1")
    assert len(out) <= len(metadata)


@SETTINGS
@given(st.text(max_size=30))
def test_header_value_keeps_text_readable(value: str) -> None:
    """header_value strips CR/LF/NUL and other controls; non-Latin-1 text travels as its UTF-8 bytes."""
    out = header_value(value)
    assert not set(out) & set(UNSAFE)
    clean = "".join(c for c in value if not ((ord(c) < 32 and c != "\t") or c == "\x7f"))
    try:
        clean.encode("latin-1")
    except UnicodeEncodeError:
        assert out.encode("latin-1").decode("utf-8") == clean
    else:
        assert out == clean


def test_metadata_header_keys_are_normalised() -> None:
    """Keys are lower-cased and other characters become `-`, e.g. `Team Name` -> `team-name`."""
    assert metadata_headers({"Team Name": "a\r\nb", "": "x"}) == {"x-vmx-metadata-team-name": "ab"}


# ------------------------------------------------------------------------------------------
# parse_body


@SETTINGS
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4), st.integers(0, 64))
def test_body_size_limit(body: dict[str, Any], slack: int) -> None:
    """A body over max_body_bytes is 413 (checked before parsing); at or under the limit it parses."""
    raw = orjson.dumps(body)
    assert parse_body(raw, len(raw) + slack) == body
    with pytest.raises(RequestTooLarge) as exc:
        parse_body(raw + b" " * (slack + 1), len(raw) + slack)
    assert exc.value.status == 413
    with pytest.raises(RequestTooLarge):
        parse_body(b"not json at all", 3)


@SETTINGS
@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_non_object_json_is_invalid(value: Any) -> None:
    """Valid JSON that is not an object (array, string, number, null) is a 400."""
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        parse_body(orjson.dumps(value), 10**6)


@pytest.mark.parametrize("raw", [b"", b"{", b"{'a': 1}", b"\xff\xfe", b'{"a": 1} x'])
def test_malformed_json_is_invalid(raw: bytes) -> None:
    """Bytes that are not JSON are a 400 that says so."""
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_body(raw, 10**6)


def test_mapping_body_is_copied() -> None:
    """A dict body (embedded use) is accepted as is, as a fresh dict."""
    body = {"model": "chat"}
    out = parse_body(body, 1)
    assert out == body and out is not body


# ------------------------------------------------------------------------------------------
# check_common_fields

BASE = {
    Format.CHAT_COMPLETIONS: {"model": "chat", "messages": []},
    Format.ANTHROPIC: {"model": "chat", "messages": [], "max_tokens": 10},
    Format.RESPONSES: {"model": "chat", "input": "hi"},
}
FIELD_OK = {
    "model": lambda v, f: isinstance(v, str) and bool(v),
    "stream": lambda v, f: v is None or isinstance(v, bool),
    "messages": lambda v, f: f is Format.RESPONSES or isinstance(v, list),
    "input": lambda v, f: f is not Format.RESPONSES or isinstance(v, str | list),
    "max_tokens": lambda v, f: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "max_completion_tokens": lambda v, f: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "max_output_tokens": lambda v, f: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
}


@SETTINGS
@given(st.sampled_from(list(Format)), st.sampled_from(sorted(FIELD_OK)), json_values)
def test_common_fields_are_type_checked(fmt: Format, field: str, value: Any) -> None:
    """A wrong-typed model/stream/messages/input/max_*tokens is a 400 with that field as param; a right one passes."""
    body = {**BASE[fmt], field: value}
    if FIELD_OK[field](value, fmt):
        check_common_fields(body, fmt)
        return
    with pytest.raises(InvalidRequest) as exc:
        check_common_fields(body, fmt)
    assert exc.value.param == field
    assert exc.value.message.startswith(f"{field}:")


@pytest.mark.parametrize("fmt", list(Format))
def test_missing_model_is_invalid(fmt: Format) -> None:
    """A body without `model` is a 400 naming `model`."""
    body = {k: v for k, v in BASE[fmt].items() if k != "model"}
    with pytest.raises(InvalidRequest) as exc:
        check_common_fields(body, fmt)
    assert exc.value.param == "model"
