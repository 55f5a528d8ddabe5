"""Cost of a request from its token counts and a price table (USD per million tokens).

The table ships as package data (``prices.json``) and ``audit.prices`` in the config replaces
entries per provider and model.  Token accounting follows the normalised usage of
:mod:`vmx_core.wire.usage`: ``prompt_tokens`` *includes* cache reads and cache writes, and
``completion_tokens`` *includes* reasoning tokens (OpenAI's convention).  So each token is
priced exactly once::

    (prompt - cached - cache_write) * input + cached * cached_input + cache_write * cache_write
    + (completion - reasoning) * output + reasoning * reasoning

Pricing cache writes as plain input (Anthropic charges 1.25x) or adding reasoning on top of
completion tokens (counting it twice) are the two mistakes this layout avoids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from attrs import frozen

from vmx_core.audit.record import AuditRecord
from vmx_core.audit.rounding import round_to
from vmx_core.config.models import ModelPrice

_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{8}$")


@frozen
class Price:
    input: float
    output: float
    cached_input: float
    cache_write: float
    reasoning: float

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Price:
        inp, out = float(raw["input"]), float(raw["output"])

        def get(key: str, default: float) -> float:
            value = raw.get(key)
            return default if value is None else float(value)

        return cls(input=inp, output=out, cached_input=get("cached_input", inp),
                   cache_write=get("cache_write", inp), reasoning=get("reasoning", out))


@frozen
class PriceTable:
    prices: Mapping[tuple[str, str], Price]

    @classmethod
    def load(cls, overrides: Mapping[str, Mapping[str, ModelPrice]] | None = None) -> PriceTable:
        raw = json.loads(resources.files("vmx_core.audit").joinpath("prices.json").read_text("utf-8"))
        table: dict[tuple[str, str], Price] = {}
        for provider, models in raw.items():
            if provider.startswith("_"):
                continue
            for model, price in models.items():
                table[(provider, model)] = Price.from_mapping(price)
        for provider, models2 in (overrides or {}).items():
            for model, mp in models2.items():
                table[(provider, model)] = Price.from_mapping(
                    {"input": mp.input, "output": mp.output, "cached_input": mp.cached_input,
                     "cache_write": mp.cache_write, "reasoning": mp.reasoning}
                )
        return cls(table)

    def lookup(self, provider: str | None, model: str | None) -> Price | None:
        if provider is None or model is None:
            return None
        found = self.prices.get((provider, model))
        if found is None:  # "gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini"
            found = self.prices.get((provider, _DATED.sub("", model)))
        return found

    def cost(self, record: AuditRecord) -> float | None:
        """USD for ``record``; ``None`` when the model's price or the usage is unknown."""
        price = self.lookup(record.provider, record.model)
        if price is None or record.prompt_tokens is None or record.completion_tokens is None:
            return None
        cached = record.cached_tokens or 0
        written = record.cache_creation_tokens or 0
        reasoning = min(record.reasoning_tokens or 0, record.completion_tokens)
        fresh = max(0, record.prompt_tokens - cached - written)
        total = (
            fresh * price.input + cached * price.cached_input + written * price.cache_write
            + (record.completion_tokens - reasoning) * price.output + reasoning * price.reasoning
        )
        return round_to(total / 1_000_000, 10)
