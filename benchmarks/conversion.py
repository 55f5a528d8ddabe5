"""The cost of converting between API shapes, per direction: one streamed chunk (a text
delta, the bulk of any stream), and one whole ~2 kB answer.

Pure CPU, no I/O: the upstream event is already parsed into an ``SSEEvent``, as the relay has
it.  Run: ``.venv/bin/python benchmarks/conversion.py``.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from vmx_core.wire.convert import StreamConverter, convert_response
from vmx_core.wire.formats import Format
from vmx_core.wire.sse import SSEEvent

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "wire" / "golden" / "in"
CONVERSE = "bedrock-converse"
NAMES = {Format.CHAT_COMPLETIONS: "chat", Format.ANTHROPIC: "anthropic", Format.RESPONSES: "responses", CONVERSE: "converse"}
N = 20_000
ROUNDS = 5
WORDS = "The quick brown fox jumps over the lazy dog. " * 45  # ~2 kB of answer text


def text_delta(src: str) -> SSEEvent:
    """A mid-stream text delta of ``src``, as an upstream sends it."""
    if src is Format.CHAT_COMPLETIONS:
        data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Hello there "}, "logprobs": None, "finish_reason": None}]}
        return SSEEvent(None, json.dumps(data), b"")
    if src is Format.ANTHROPIC:
        data = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello there "}}
        return SSEEvent("content_block_delta", json.dumps(data), b"")
    if src == CONVERSE:
        return SSEEvent("contentBlockDelta", json.dumps({"contentBlockIndex": 0, "delta": {"text": "Hello there "}}), b"")
    data = {"type": "response.output_text.delta", "sequence_number": 5, "item_id": "msg_1", "output_index": 1,
            "content_index": 0, "delta": "Hello there ", "logprobs": []}
    return SSEEvent("response.output_text.delta", json.dumps(data), b"")


#: The events that open a stream and its first text block, per upstream shape.
OPENING: dict[str, list[SSEEvent]] = {
    CONVERSE: [SSEEvent("messageStart", json.dumps({"role": "assistant", "model": "m"}), b"")],
    Format.CHAT_COMPLETIONS: [],  # a Chat stream opens its text block with the first delta
    Format.ANTHROPIC: [
        SSEEvent("message_start", json.dumps({"type": "message_start", "message": {
            "id": "msg_1", "model": "m", "usage": {"input_tokens": 10, "output_tokens": 1}}}), b""),
        SSEEvent("content_block_start", json.dumps({"type": "content_block_start", "index": 0,
                                                    "content_block": {"type": "text", "text": ""}}), b""),
    ],
    Format.RESPONSES: [
        SSEEvent("response.created", json.dumps({"type": "response.created", "response": {"id": "resp_1", "model": "m"}}), b""),
        SSEEvent("response.content_part.added", json.dumps({"type": "response.content_part.added", "output_index": 1,
                                                            "content_index": 0, "part": {"type": "output_text", "text": ""}}), b""),
    ],
}


def primed(src: str, dst: Format) -> StreamConverter:
    """A converter in the middle of a text block, as for the bulk of a stream."""
    conv = StreamConverter(src, dst, 10)
    for ev in [*OPENING[src], text_delta(src)]:
        conv.feed(ev)
    return conv


def whole(src: str) -> dict[str, object]:
    body = json.loads((GOLDEN / f"{NAMES[src]}.json").read_text())
    blob = json.dumps(body).replace("Let me check.", WORDS).replace("Checking both.", WORDS).replace("One moment.", WORDS)
    return json.loads(blob)


def best(fn: Callable[[], object]) -> tuple[float, float]:
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(N):
            fn()
        rounds.append((time.perf_counter() - start) / N * 1e6)
    return statistics.median(rounds), min(rounds)


def main() -> None:
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {N} iterations x {ROUNDS} rounds")
    print(f"{'direction (upstream -> client)':34} {'chunk µs (median/min)':>24} {'2 kB answer µs (median/min)':>30}")
    for src in [*Format, CONVERSE]:
        for dst in Format:
            if src is dst:
                continue
            conv = primed(src, dst)
            ev = text_delta(src)
            body = whole(src)
            size = len(orjson.dumps(body))
            chunk = best(lambda conv=conv, ev=ev: conv.feed(ev))
            answer = best(lambda src=src, dst=dst, body=body: convert_response(src, dst, body))
            label = f"{NAMES[src]} -> {NAMES[dst]}"
            print(f"{label:34} {chunk[0]:>12.2f} / {chunk[1]:<9.2f} {answer[0]:>15.2f} / {answer[1]:<9.2f} ({size} B)")


if __name__ == "__main__":
    main()
