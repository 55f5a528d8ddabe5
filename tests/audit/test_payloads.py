"""``audit.payloads``: bodies land in ``request_audit_payload`` (SQLite and Postgres), redacted."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.audit.test_queue import FlakyStore
from tests.conftest import KEY, KEY_SHA
from vmx_core import ClientRequest, Gateway
from vmx_core.audit.query import AuditQuery
from vmx_core.audit.queue import QueueSink
from vmx_core.audit.store import AuditStore, open_store
from vmx_core.config import config_from_dict
from vmx_core.errors import UpstreamRejected
from vmx_core.reply import StreamingCompletion
from vmx_core.wire.formats import Format

UPSTREAM_SECRET = "sk-upstream-PAYLOAD-0123456789abcdef"
IMAGE = bytes(range(256)) * 16
IMAGE_URL = "data:image/jpeg;base64," + base64.b64encode(IMAGE).decode()


def payload_config(audit_uri: str, tmp_path: Path, **audit: Any) -> dict[str, Any]:
    """Connection ``m`` (mock, with a credential) behind resources ``chat`` and ``broken``."""
    return {
        "storage": {"audit": audit_uri},
        "audit": {"payloads": "redacted", "spool_dir": str(tmp_path / "spool"), **audit},
        "workspaces": {"acme": {"environments": {"prod": {
            "connections": {
                "m": {"provider": "mock", "credentials": {"api_key": UPSTREAM_SECRET}},
                "bad": {"provider": "mock", "options": {"fail_rate": 1.0, "fail_status": 400}},
            },
            "resources": {"chat": {"model": {"connection": "m", "model": "mock-1"}},
                          "broken": {"model": {"connection": "bad", "model": "mock-1"}}},
            "api_keys": {"app": {"key_sha256": KEY_SHA, "resources": ["*"]}},
        }}}},
    }


def secret_body(**extra: Any) -> dict[str, Any]:
    """A chat body carrying every kind of thing redaction must remove."""
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": f"keys: {KEY} and {UPSTREAM_SECRET}"},
            {"type": "image_url", "image_url": {"url": IMAGE_URL}},
        ]}],
        "vmx": {"metadata": {"email": "ann@example.com"}, "providerArgs": {"user": "ann", "api_key": "sk-client-0123456789abcdefgh"}},
        **extra,
    }


async def _stored(store: AuditStore) -> list[dict[str, Any]]:
    rows = await store.fetch(AuditQuery("acme", "prod", limit=100))
    out = []
    for r in sorted(rows, key=lambda r: r["timestamp"]):
        p = await store.fetch_payload("acme", "prod", r["id"])
        out.append({"row": r, "payload": p})
    return out


async def _drain(reply: Any) -> None:
    assert isinstance(reply, StreamingCompletion)
    async for _ in reply:
        pass


async def test_redacted_bodies_are_stored_for_every_shape_without_any_secret(store_uri: str, tmp_path: Path) -> None:
    """Whole and streamed answers (chat, anthropic) and an error store three bodies, secrets and media removed."""
    config = config_from_dict(payload_config(store_uri, tmp_path, redact_paths=["$.vmx.metadata.email", "$..user"]), environ={})
    async with Gateway.from_config(config) as gw:
        await gw.chat_completions("acme", "prod", secret_body(), api_key=KEY)
        await _drain(await gw.handle(ClientRequest(Format.CHAT_COMPLETIONS, "acme", "prod", orjson.dumps(secret_body(stream=True)), KEY)))
        anthropic = {"model": "chat", "max_tokens": 50, "stream": True,
                     "messages": [{"role": "user", "content": [{"type": "text", "text": f"hi {UPSTREAM_SECRET}"}]}]}
        await _drain(await gw.handle(ClientRequest(Format.ANTHROPIC, "acme", "prod", orjson.dumps(anthropic), KEY)))
        with pytest.raises(UpstreamRejected):  # the upstream's 400, passed on
            await gw.chat_completions("acme", "prod", {**secret_body(), "model": "broken"}, api_key=KEY)
    store = open_store(store_uri)
    await store.connect()
    try:
        stored = await _stored(store)
    finally:
        await store.aclose()
    dump = orjson.dumps([s["payload"] for s in stored]).decode()
    for secret in (KEY, UPSTREAM_SECRET, "sk-client-0123456789abcdefgh", "ann@example.com", IMAGE_URL[30:90]):
        assert secret not in dump
    whole, streamed, anth, failed = (s["payload"] for s in stored)
    image = {"type": "data_url", "media_type": "image/jpeg", "bytes": len(IMAGE), "sha256": hashlib.sha256(IMAGE).hexdigest()}
    assert whole["client_body"]["messages"][0]["content"][1]["image_url"]["url"] == image
    assert whole["client_body"]["vmx"]["providerArgs"] == {"user": "[REDACTED]", "api_key": "[REDACTED]"}
    assert whole["upstream_body"]["model"] == "mock-1" and "vmx" not in whole["upstream_body"]
    assert whole["response_body"]["choices"][0]["message"]["content"].endswith("keys: [REDACTED] and [REDACTED] ")
    events = streamed["response_body"]["events"]
    assert streamed["response_body"]["truncated"] is False and events[-1] == {"data": "[DONE]"}
    assert "".join(e["data"]["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["data"].get("choices"))
    assert streamed["upstream_body"]["stream"] is True
    assert [e["event"] for e in anth["response_body"]["events"]][-1] == "message_stop"
    assert failed["upstream_body"] is not None and failed["response_body"]["error"]["code"]
    assert [s["row"]["status_code"] for s in stored] == [200, 200, 200, 400]


async def test_a_stream_is_stored_up_to_the_bound(tmp_path: Path) -> None:
    """Past ``max_stream_payload_bytes`` the stored stream stops and says it was truncated."""
    uri = f"sqlite:///{tmp_path}/a.db"
    config = config_from_dict(payload_config(uri, tmp_path, max_stream_payload_bytes=600), environ={})
    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": " ".join(["word"] * 40)}]}
    async with Gateway.from_config(config) as gw:
        await _drain(await gw.handle(ClientRequest(Format.CHAT_COMPLETIONS, "acme", "prod", orjson.dumps(body), KEY)))
    store = open_store(uri)
    await store.connect()
    [s] = await _stored(store)
    await store.aclose()
    response = s["payload"]["response_body"]
    assert response["truncated"] is True
    assert 0 < len(response["events"]) < 40
    assert sum(len(orjson.dumps(e["data"])) for e in response["events"]) <= 600


async def test_payloads_none_writes_rows_but_no_bodies(tmp_path: Path) -> None:
    """The default mode captures nothing: the audit row is written, the payload table stays empty."""
    uri = f"sqlite:///{tmp_path}/a.db"
    config = config_from_dict(payload_config(uri, tmp_path, payloads="none"), environ={})
    async with Gateway.from_config(config) as gw:
        [sink] = gw.sinks
        assert isinstance(sink, QueueSink) and sink.redactor is None
        await gw.chat_completions("acme", "prod", secret_body(), api_key=KEY)
    store = open_store(uri)
    await store.connect()
    [s] = await _stored(store)
    await store.aclose()
    assert s["row"]["status_code"] == 200 and s["payload"] is None


async def test_bodies_survive_an_outage_through_the_spool(tmp_path: Path) -> None:
    """A row spooled while the database is down is replayed with its bodies, once."""
    uri = f"sqlite:///{tmp_path}/a.db"
    config = config_from_dict(payload_config(uri, tmp_path), environ={})
    gw = Gateway.from_config(config)
    async with gw:
        [sink] = gw.sinks
        assert isinstance(sink, QueueSink)
        sink.store = flaky = FlakyStore(sink.store, down=True)
        sink.retry_min = sink.retry_max = 0.01
        await gw.chat_completions("acme", "prod", secret_body(), api_key=KEY)
        await sink.drained()
        assert sink.counters.spooled == 1
        assert UPSTREAM_SECRET.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "spool").glob("spool-*"))
        flaky.down = False
    store = open_store(uri)
    await store.connect()
    [s] = await _stored(store)
    await store.aclose()
    assert s["payload"]["client_body"]["messages"][0]["content"][1]["image_url"]["url"]["bytes"] == len(IMAGE)
