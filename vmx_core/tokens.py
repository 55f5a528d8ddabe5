"""Input-token estimation, computed only when a routing rule or a limit needs the number.

``bpe-openai`` ships the o200k_base table inside its wheel (tiktoken would download it at run
time, which fails offline).  Above ``EXACT_LIMIT`` characters the count is estimated from the
length: encoding megabytes on the request path is not worth the precision.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

#: Characters per token measured on English prose and code with o200k_base.
CHARS_PER_TOKEN = 4.0
EXACT_LIMIT = 32_000


@functools.cache
def _encoding() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def count_text(text: str) -> int:
    if len(text) > EXACT_LIMIT:
        return int(len(text) / CHARS_PER_TOKEN) + 1
    return len(_encoding().encode(text))


def estimate_request(body: Mapping[str, Any]) -> int:
    """Estimate input tokens of a chat, responses or anthropic body (text parts, tools)."""
    parts: list[str] = []
    _collect_text(body.get("system"), parts)
    _collect_text(body.get("instructions"), parts)
    _collect_text(body.get("messages"), parts)
    _collect_text(body.get("input"), parts)
    tools = body.get("tools")
    if tools:
        import orjson

        parts.append(orjson.dumps(tools).decode())
    messages = body.get("messages")
    per_message = 3 * (len(messages) if isinstance(messages, list) else 1)
    return 3 + per_message + sum(count_text(p) for p in parts)


def _collect_text(node: Any, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, list):
        for item in node:
            _collect_text(item, out)
    elif isinstance(node, dict):
        for key in ("content", "text", "input", "output", "arguments"):
            if key in node:
                _collect_text(node[key], out)
