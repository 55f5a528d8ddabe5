"""Audit fixtures: every store test runs against SQLite and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.services.postgres import postgres_server, postgres_uri  # noqa: F401 (fixtures)
from vmx_core.audit.rows import Row, iso
from vmx_core.audit.store import AuditStore, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh audit database URI of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/audit.db"
    return str(request.getfixturevalue("postgres_uri"))


@pytest.fixture
async def store(store_uri: str) -> AsyncIterator[AuditStore]:
    s = open_store(store_uri)
    await s.connect()
    yield s
    await s.aclose()


def make_row(**overrides: Any) -> Row:
    """A complete audit row; ``overrides`` replace columns."""
    row: Row = {
        "id": str(uuid.uuid4()), "timestamp": iso(dt.datetime.now(dt.UTC)), "workspace": "acme",
        "environment": "prod", "resource": "chat", "connection": "up", "provider": "openai",
        "model": "gpt-4o-mini", "api_key_id": "app", "format": "chat-completions", "stream": False,
        "status_code": 200, "error_code": None, "error_message": None,
        "attempts": [{"connection": "up", "provider": "openai", "model": "gpt-4o-mini", "status": 200,
                      "reason": None, "duration_ms": 1.5}],
        "routing_rule": None, "correlation_id": None, "metadata": {}, "prompt_tokens": 10,
        "completion_tokens": 5, "total_tokens": 15, "cached_tokens": 0, "cache_creation_tokens": 0,
        "reasoning_tokens": 0, "cost": None, "duration_ms": 12.5, "ttft_ms": None, "upstream_ms": 10.0,
        "gate_ms": 0.0, "routing_ms": 0.1, "source_ip": "127.0.0.1",
    }
    row.update(overrides)
    return row
