"""Token usage, normalised across dialects.

``prompt_tokens`` always *includes* cached and cache-write tokens (OpenAI's convention);
Anthropic's ``input_tokens`` excludes them, so its converter adds them back.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen


@frozen
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def from_chat(usage: Any) -> Usage | None:
    """A Chat Completions ``usage`` object (whole response or the final stream chunk)."""
    if not isinstance(usage, dict):
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        cached_tokens=_int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0,
        reasoning_tokens=_int(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else 0,
    )


def from_responses(usage: Any) -> Usage | None:
    """A Responses API ``usage`` object."""
    if not isinstance(usage, dict):
        return None
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=_int(usage.get("input_tokens")),
        completion_tokens=_int(usage.get("output_tokens")),
        cached_tokens=_int(input_details.get("cached_tokens")) if isinstance(input_details, dict) else 0,
        reasoning_tokens=_int(output_details.get("reasoning_tokens"))
        if isinstance(output_details, dict)
        else 0,
    )


def from_anthropic(usage: Any) -> Usage | None:
    """An Anthropic ``usage`` object; ``input_tokens`` excludes cache reads and writes."""
    if not isinstance(usage, dict):
        return None
    cached = _int(usage.get("cache_read_input_tokens"))
    created = _int(usage.get("cache_creation_input_tokens"))
    return Usage(
        prompt_tokens=_int(usage.get("input_tokens")) + cached + created,
        completion_tokens=_int(usage.get("output_tokens")),
        cached_tokens=cached,
        cache_creation_tokens=created,
    )
