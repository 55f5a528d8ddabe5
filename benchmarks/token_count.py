"""Input-token counting (issue 9): vmx's pure-Python o200k_base counter against bpe-openai's
Rust encoder, which vmx used before.  Each side runs in a fresh interpreter and reports

- the RSS that loading adds (VmRSS before and after the first count) and the load time;
- µs per ``estimate_request`` of the gateway benchmark's chat body (min of 7 repeats); for
  the new counter both warm (its piece cache already holds the body's pieces, the steady state
  of a repeated prompt) and cold (cache emptied before every call: text never seen);
- ms per ``count_text`` of 32,000-character texts, the longest counted exactly (cold cache;
  pieces that recur inside one text still hit it).

Run: ``.venv/bin/python -m benchmarks.token_count``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import orjson

from benchmarks.gateway.configs import body

REPEATS = 7
# Fullwidth comma, ideographic full stop and comma, fullwidth semicolon, colon, ! and ?.
CJK_PUNCTUATION = "\uff0c\u3002\u3001\uff1b\uff1a\uff01\uff1f"
NUMBER = 20_000


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _long_texts() -> dict[str, str]:
    rng = random.Random(9)
    docs = sorted(Path(__file__).resolve().parents[1].joinpath("docs").glob("*.md"))
    # Text the piece cache has not seen: common CJK ideographs in clauses of 4-20 with
    # punctuation between, the shape of Chinese prose.
    clauses = []
    while sum(map(len, clauses)) < 32_000:
        clauses.append("".join(chr(rng.randrange(0x4E00, 0x4E00 + 3000)) for _ in range(rng.randint(4, 20))))
        clauses.append(rng.choice(CJK_PUNCTUATION))
    tools = [{"name": f"tool_{t}", "parameters": {"type": "object", "properties": {
        f"field_{i}": {"type": "string", "description": f"value {i} of tool {t}"} for i in range(20)}}} for t in range(40)]
    return {
        "English (this repo's docs)": "".join(d.read_text() for d in docs)[:32_000],
        "Chinese-like, never seen": "".join(clauses)[:32_000],
        "JSON tool schemas": json.dumps(tools)[:32_000],
        "'a' x 32,000 (one piece)": "a" * 32_000,
        "random letters (one piece)": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(32_000)),
    }


def _measure(variant: str) -> dict[str, Any]:
    from vmx_core import tokens

    request = orjson.loads(body("chat", False, vmx=True))
    before = _rss_mib()
    start = time.perf_counter()
    if variant == "old":
        # What vmx_core/tokens.py did before: bpe-openai's encoder, `encode` (special-token scan).
        import bpe_openai

        encoding = bpe_openai.get_encoding("o200k_base")

        def old_count(text: str) -> int:
            if len(text) > tokens.EXACT_LIMIT:
                return int(len(text) / tokens.CHARS_PER_TOKEN) + 1
            return len(encoding.encode(text))

        tokens.count_text = old_count  # estimate_request looks the name up at each call
        clear = None
    else:
        tokens.count_text("load")
        clear = tokens.forget
    load_s = time.perf_counter() - start
    added = _rss_mib() - before
    result: dict[str, Any] = {"load_s": load_s, "rss_added_mib": added, "estimate": tokens.estimate_request(request)}

    def per_call_us(fn: Any) -> float:
        return min(timeit.repeat(fn, number=NUMBER, repeat=REPEATS)) / NUMBER * 1e6

    result["estimate_us"] = per_call_us(lambda: tokens.estimate_request(request))
    if clear is not None:
        result["estimate_cold_us"] = per_call_us(lambda: (clear(), tokens.estimate_request(request)))
    long_ms = {}
    for name, text in _long_texts().items():
        best = float("inf")
        for _ in range(3):
            if clear is not None:
                clear()
            start = time.perf_counter()
            tokens.count_text(text)
            best = min(best, time.perf_counter() - start)
        long_ms[name] = best * 1e3
    result["long_ms"] = long_ms
    result["bpe_openai_imported"] = "bpe_openai" in sys.modules
    return result


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--variant":
        print(json.dumps(_measure(sys.argv[2])))
        return
    runs = {}
    for variant in ("old", "new"):
        out = subprocess.run(
            [sys.executable, "-W", "ignore", "-m", "benchmarks.token_count", "--variant", variant],
            capture_output=True, text=True, check=True,
        )
        runs[variant] = json.loads(out.stdout)
    old, new = runs["old"], runs["new"]
    print("| | bpe-openai (Rust) | vmx (pure Python) |")
    print("|---|---|---|")
    print(f"| RSS added by loading | {old['rss_added_mib']:.1f} MiB | {new['rss_added_mib']:.1f} MiB |")
    print(f"| load time | {old['load_s'] * 1e3:.0f} ms | {new['load_s'] * 1e3:.0f} ms |")
    print(f"| µs per estimate_request (benchmark body, {old['estimate']} tokens) "
          f"| {old['estimate_us']:.1f} | {new['estimate_us']:.1f} warm, {new['estimate_cold_us']:.1f} cold |")
    for name, ms in old["long_ms"].items():
        print(f"| ms per count_text, 32,000 chars: {name} | {ms:.1f} | {new['long_ms'][name]:.1f} |")
    assert old["estimate"] == new["estimate"], "the two counters disagree"
    assert not new["bpe_openai_imported"]


if __name__ == "__main__":
    main()
