"""Redaction of audit payloads: credentials, base64 media and configured JSON paths."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import base_config
from vmx_core.audit.redact import REDACTED, Redactor, compile_path
from vmx_core.config import config_from_dict
from vmx_core.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PNG_B64 = base64.b64encode(PNG).decode()
SHA = hashlib.sha256(PNG).hexdigest()


def test_credential_fields_are_replaced_at_any_depth() -> None:
    """Authorization-like keys and api keys lose their values whatever their spelling."""
    body = {"headers": {"Authorization": "Bearer abc", "X-Api-Key": "k1"}, "api_key": "k2",
            "nested": [{"client_secret": "k3", "aws_secret_access_key": "k4", "password": "k5"}],
            "max_tokens": 5, "prompt_cache_key": "not-a-secret"}
    out = Redactor("redacted").redact(body)
    assert out["headers"] == {"Authorization": REDACTED, "X-Api-Key": REDACTED}
    assert out["api_key"] == REDACTED and set(out["nested"][0].values()) == {REDACTED}
    assert out["max_tokens"] == 5 and out["prompt_cache_key"] == "not-a-secret"


def test_known_secrets_and_key_shapes_are_cut_out_of_text() -> None:
    """The request's own secrets and well-known key shapes vanish from free text."""
    text = ("mine is vmx_" + "a" * 43 + ", theirs sk-proj-0123456789abcdefghij, header Bearer tok3n-0123456789"
            " and the connection's CUSTOM-SECRET-42; a Bearer of bad news stays")
    out = Redactor("full").redact({"content": text}, secrets=["CUSTOM-SECRET-42"])["content"]
    assert "vmx_aaaa" not in out and "sk-proj" not in out and "tok3n" not in out and "CUSTOM-SECRET" not in out
    assert out.count(REDACTED) == 4 and "a Bearer of bad news stays" in out


def test_data_urls_and_base64_sources_become_summaries() -> None:
    """Images, audio and documents sent as base64 are stored as type, size and digest."""
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "input_audio", "input_audio": {"data": PNG_B64, "format": "wav"}},
        {"inline_data": {"mime_type": "application/pdf", "data": PNG_B64}},
        {"type": "text", "text": "describe these"},
    ]}], "audio": base64.b64encode(PNG * 2).decode()}
    parts = Redactor("redacted").redact(body)["messages"][0]["content"]
    assert parts[0]["image_url"]["url"] == {"type": "data_url", "media_type": "image/png", "bytes": len(PNG), "sha256": SHA}
    assert parts[1]["source"] == {"type": "base64", "media_type": "image/png", "bytes": len(PNG), "sha256": SHA}
    assert parts[2]["input_audio"]["media_type"] == "audio/wav" and parts[3]["inline_data"]["sha256"] == SHA
    assert parts[4]["text"] == "describe these"
    assert Redactor("redacted").redact(body)["audio"]["bytes"] == 2 * len(PNG)
    assert PNG_B64 not in orjson.dumps(Redactor("redacted").redact(body)).decode()


def test_full_mode_keeps_media_and_paths_but_never_credentials() -> None:
    """``full`` stores bodies as sent, minus credentials."""
    body = {"image": f"data:image/png;base64,{PNG_B64}", "user": "u1", "api_key": "k"}
    out = Redactor.from_config("full", ["$.user"]).redact(body)
    assert out == {"image": body["image"], "user": "u1", "api_key": REDACTED}


@pytest.mark.parametrize(("path", "expected"), [
    ("$.messages[*].content", {"messages": [{"role": "user", "content": REDACTED}, {"role": "a", "content": REDACTED}], "user": {"email": "e"}}),
    ("$.messages[0].content", {"messages": [{"role": "user", "content": REDACTED}, {"role": "a", "content": "y"}], "user": {"email": "e"}}),
    ("$..email", {"messages": [{"role": "user", "content": "x"}, {"role": "a", "content": "y"}], "user": {"email": REDACTED}}),
    ("user['email']", {"messages": [{"role": "user", "content": "x"}, {"role": "a", "content": "y"}], "user": {"email": REDACTED}}),
    ("$.nothing.here", {"messages": [{"role": "user", "content": "x"}, {"role": "a", "content": "y"}], "user": {"email": "e"}}),
])
def test_redact_paths_select_what_they_say(path: str, expected: Any) -> None:
    """Each supported JSON-path form replaces exactly the values it selects."""
    body = {"messages": [{"role": "user", "content": "x"}, {"role": "a", "content": "y"}], "user": {"email": "e"}}
    assert Redactor.from_config("redacted", [path]).redact(body) == expected
    assert body["user"] == {"email": "e"}  # the input is never modified


def test_a_bad_redact_path_fails_the_config_with_its_path() -> None:
    """``vmx check`` names the broken entry of ``audit.redact_paths``."""
    with pytest.raises(ConfigError) as exc:
        config_from_dict({**base_config(), "audit": {"payloads": "redacted", "redact_paths": ["$.ok", "$.a[b"]}}, environ={})
    assert exc.value.errors[0][0] == "$.audit.redact_paths[1]"
    with pytest.raises(ValueError, match="whole body"):
        compile_path("$")


def test_nul_characters_never_reach_the_database() -> None:
    """Strings lose NUL (Postgres jsonb refuses it, which would poison a whole batch)."""
    assert Redactor("full").redact({"a\x00": ["x\x00y"]}) == {"a": ["xy"]}


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
SECRET = "vmx_" + "Z" * 43


@settings(max_examples=150, deadline=None)
@given(doc=_json, where=st.sampled_from(["text", "api_key", "authorization", "deep"]), mode=st.sampled_from(["full", "redacted"]))
def test_no_known_secret_survives_redaction(doc: Any, where: str, mode: str) -> None:
    """Wherever a request's secret is hidden in a body, the stored form does not contain it."""
    if where == "text":
        body: Any = {"doc": doc, "note": f"prefix {SECRET} suffix"}
    elif where == "deep":
        body = {"doc": doc, "a": [{"b": {"c": SECRET}}]}
    else:
        body = {"doc": doc, where: SECRET}
    out = orjson.dumps(Redactor(mode).redact(body, secrets=[SECRET])).decode()
    assert SECRET not in out
