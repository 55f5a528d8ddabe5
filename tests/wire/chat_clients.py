"""How Chat clients fold a streamed answer's ``thinking_blocks`` deltas into the assistant
message they send back on the next turn, each its own way.

* the official ``openai`` SDK's stream state (``ChatCompletionStreamState``, what
  ``chat.completions.stream()`` uses) merges list deltas by their ``index`` and joins strings;
* LiteLLM's stream builder joins the text of ``thinking`` entries until a signature ends the
  block, and keeps each ``redacted_thinking`` entry as a block of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk


def openai_sdk_message(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The final assistant message the ``openai`` SDK assembles from the chunks."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        list(state.handle_chunk(ChatCompletionChunk.model_validate(chunk)))
    message: dict[str, Any] = state.get_final_completion().choices[0].message.to_dict(mode="json")
    return message


def without_index(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Thinking blocks as a whole answer lists them: the SDK keeps each delta's ``index``."""
    return [{k: v for k, v in b.items() if k != "index"} for b in blocks]


def litellm_thinking_blocks(chunks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The thinking blocks LiteLLM's stream builder makes of the chunks (unsigned text is not a
    block it keeps: Anthropic would refuse it back)."""
    blocks: list[dict[str, Any]] = []
    text: list[str] = []
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            for entry in (choice.get("delta") or {}).get("thinking_blocks") or []:
                if entry.get("type") == "redacted_thinking":
                    text = []
                    blocks.append({"type": "redacted_thinking", "data": entry["data"]})
                    continue
                if entry.get("thinking"):
                    text.append(entry["thinking"])
                if entry.get("signature"):
                    if text:
                        blocks.append({"type": "thinking", "thinking": "".join(text), "signature": entry["signature"]})
                    text = []
    return blocks
