"""Cost per row: cache reads, cache writes and reasoning tokens are each priced once."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from vmx_core.audit.prices import PriceTable
from vmx_core.audit.record import AuditRecord
from vmx_core.config import config_from_dict


def record(**kw: Any) -> AuditRecord:
    base: dict[str, Any] = dict(
        id=uuid.uuid4(), timestamp=dt.datetime.now(dt.UTC), workspace="w", environment="e", resource="r",
        connection="c", provider="openai", model="gpt-4o-mini", api_key_id=None, format="chat-completions",
        stream=False, status_code=200, error_code=None, error_message=None, attempts=(), routing_rule=None,
        correlation_id=None, metadata={}, prompt_tokens=1000, completion_tokens=500, total_tokens=1500,
        cached_tokens=0, cache_creation_tokens=0, reasoning_tokens=0, cost=None, duration_ms=1.0,
        ttft_ms=None, upstream_ms=1.0, gate_ms=0.0, routing_ms=0.0, source_ip=None,
    )
    base.update(kw)
    return AuditRecord(**base)


def test_plain_input_and_output_use_the_shipped_table() -> None:
    """gpt-4o-mini: 1000 in at $0.15/M plus 500 out at $0.60/M."""
    assert PriceTable.load().cost(record()) == pytest.approx((1000 * 0.15 + 500 * 0.6) / 1e6)


def test_cache_reads_and_writes_are_priced_at_their_own_rates() -> None:
    """Anthropic: cached tokens at the read price, cache-creation tokens at the write price."""
    r = record(provider="anthropic", model="claude-sonnet-4-5", prompt_tokens=1000, cached_tokens=600,
               cache_creation_tokens=300, completion_tokens=100)
    expected = (100 * 3.0 + 600 * 0.3 + 300 * 3.75 + 100 * 15.0) / 1e6
    assert PriceTable.load().cost(r) == pytest.approx(expected)


def test_reasoning_tokens_are_inside_completion_tokens_not_added() -> None:
    """o4-mini with 400 of 500 completion tokens reasoning costs the same as 500 output tokens
    (reasoning defaults to the output price), not 900."""
    table = PriceTable.load()
    with_reasoning = table.cost(record(model="o4-mini", reasoning_tokens=400))
    assert with_reasoning == pytest.approx((1000 * 1.1 + 500 * 4.4) / 1e6)


def test_unknown_model_or_usage_costs_null_and_config_overrides() -> None:
    """No price (or no usage) gives null; ``audit.prices`` adds and replaces entries."""
    table = PriceTable.load()
    assert table.cost(record(model="no-such-model")) is None
    assert table.cost(record(prompt_tokens=None)) is None
    cfg = config_from_dict({"audit": {"prices": {"openai": {"gpt-4o-mini": {"input": 1, "output": 2, "reasoning": 10}},
                                                  "mock": {"mock-1": {"input": 1, "output": 1}}}}}, environ={})
    custom = PriceTable.load(cfg.audit.prices)
    assert custom.cost(record(reasoning_tokens=100)) == pytest.approx((1000 * 1 + 400 * 2 + 100 * 10) / 1e6)
    assert custom.cost(record(provider="mock", model="mock-1")) == pytest.approx(1500 / 1e6)
    assert custom.cost(record(model="gpt-4o-mini-2024-07-18")) is not None
