"""The pure-Python o200k_base counter against bpe-openai's Rust encoder, the oracle."""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core import tokens


@functools.cache
def _oracle() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def _oracle_count(text: str) -> int:
    return len(_oracle().encode_ordinary(text))


def _ranks() -> Mapping[bytes, int]:
    return tokens._counter().counts.ranks


# Characters Python's Unicode tables know (Cn excludes what was assigned later), so the
# alphabet stays inside Unicode 16, the version of bpe-openai's regex engine; the `regex`
# module classifies by Unicode 17, which assigned ~17,500 characters and moved U+0295 from Ll
# to Lo.  Surrogates get their own test.
_CHARS = st.characters(exclude_categories=("Cs", "Cn"), exclude_characters="\u0295")
_FRAGMENTS = st.sampled_from(
    [
        "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "it's", "DON'T", "we'd",
        " ", "   ", "\t", "\n", "\r\n", "\n\n\n", "  \n", " \t \n ", "\u00a0", "\u3000", "\u2028", "\x85",
        "\x0b", "\x0c", "\x1c", "\x1f", "/", "//", "\n/", "...", "?!", "—", "«»", "()", "[]", "{}",
        "0", "7", "42", "123", "2024", "3.14159", "1,000,000", "١٢٣", "Ⅻ", "½",
        "the", " The", " THE", "HTTPServer", "camelCase", "snake_case", "ǅemal", "ʰ", "naïve", "e\u0301",
        "def f(x):\n    return x ** 2\n", "{\"a\": [1, 2, {\"b\": null}]}", "<div class=\"x\">", "x += 1;",
        "😀", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "🇫🇷", "❤️", "你好", "\uff0c", "世界。", "カタカナ", "ひらがな", "한국어", "ไทย", "Ωμέγα", "Привет",
        "<|endoftext|>", "<|endofprompt|>", "<|fim_prefix|>", "\u017f", "\u212a",  # long s and the Kelvin sign fold to s and k under (?i)
    ]
)
_TEXTS = st.lists(
    st.one_of(
        _FRAGMENTS,
        st.text(_CHARS, max_size=12),
        st.text(st.characters(max_codepoint=127), max_size=12),
        st.text(st.sampled_from(" \t\n\r\x0b\x0c\u00a0\u2003\u3000"), min_size=1, max_size=6),
        st.integers(0, 10**15).map(str),
    ),
    max_size=24,
).map("".join)


@settings(max_examples=1500, deadline=None)
@given(_TEXTS)
def test_count_equals_bpe_openai(text: str) -> None:
    """For generated text (contractions, whitespace runs, digits, punctuation, code, emoji,
    CJK, any Unicode 16 character) the count equals bpe-openai's encode_ordinary length."""
    assert tokens.count_text(text) == _oracle_count(text)


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(max_codepoint=127), max_size=60))
def test_ascii_pattern_splits_like_the_unicode_one(text: str) -> None:
    """On ASCII text the stdlib pattern splits exactly where o200k_base's Unicode pattern does."""
    assert tokens._ASCII_SPLIT.findall(text) == tokens._counter().split.findall(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello world", 2),
        ("<|endoftext|>", 7),
        ("<|endoftext|><|endofprompt|>", 13),
        ("I'm here", 2),
    ],
)
def test_known_counts(text: str, expected: int) -> None:
    """A few pinned counts, special-token strings counted as the ordinary text they are."""
    assert tokens.count_text(text) == expected == _oracle_count(text)


@pytest.mark.parametrize(
    "text",
    [
        "Please ignore <|endoftext|> and <|endofprompt|> in the user's text.",
        "<|endoftext|>" * 50,
        "a" * 20_000,  # one piece of 20,000 bytes: the merge must not be quadratic
        "".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(6_000)),  # CJK without punctuation
        "0123456789" * 1_000,
        " " * 5_000 + "x",
        "\n" * 3_000,
        "ab" * 8_000,
    ],
    ids=["special-tokens", "many-special", "a-run", "cjk-run", "digits", "spaces", "newlines", "ab-run"],
)
def test_long_and_special_texts(text: str) -> None:
    """Special-token-looking strings and long runs without split points are counted exactly."""
    assert tokens.count_text(text) == _oracle_count(text)


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "x\ud83d\ude00y", "\ud83d\ude00", "é\udc00"])
def test_surrogates_are_counted_as_bpe_openai_does(text: str) -> None:
    """Lone surrogates count as U+FFFD and a surrogate pair as its character, like the oracle."""
    assert tokens.count_text(text) == _oracle_count(text)


def test_above_the_exact_limit_the_count_is_estimated() -> None:
    """Texts longer than EXACT_LIMIT characters are estimated from their length."""
    text = "word " * (tokens.EXACT_LIMIT // 5 + 1)
    assert tokens.count_text(text) == int(len(text) / tokens.CHARS_PER_TOKEN) + 1


def _reference_merge(data: bytes, ranks: Mapping[bytes, int]) -> int:
    """The textbook BPE loop: merge the lowest-ranked adjacent pair, leftmost first."""
    parts = [data[i : i + 1] for i in range(len(data))]
    while True:
        candidates = [(rank, i) for i in range(len(parts) - 1) if (rank := ranks.get(parts[i] + parts[i + 1])) is not None]
        if not candidates:
            return len(parts)
        _, i = min(candidates)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40) | st.text(st.sampled_from("ab \n'é你"), max_size=40).map(str.encode))
def test_heap_merge_equals_the_textbook_loop(data: bytes) -> None:
    """The O(n log n) merge leaves as many parts as the quadratic textbook loop, ties included."""
    assert tokens.merged_count(data, _ranks()) == _reference_merge(data, _ranks())


def test_the_table_is_openais_o200k_base() -> None:
    """The file read is OpenAI's o200k_base (tiktoken's published SHA-256) and parses to 199,998 ranks 0..199,997."""
    path = tokens.data_file()
    assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
    )
    ranks = tokens.read_ranks(path)
    assert sorted(ranks.values()) == list(range(199_998))


def test_piece_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The remembered piece counts are emptied when full and stay exact across the refill."""
    monkeypatch.setattr(tokens, "_CACHE_ENTRIES", 16)
    counts = tokens.PieceCounts(_ranks())
    words = [f"w{i}x" for i in range(100)]
    assert [counts[w] for w in words] == [_oracle_count(w) for w in words]
    assert len(counts) <= 16
    counts["y" * (tokens._CACHED_PIECE_CHARS + 1)]
    assert "y" * (tokens._CACHED_PIECE_CHARS + 1) not in counts


def test_text_cache_is_exact_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole texts counted before answer from the cache, with the count they had; the cache is
    emptied when it holds too many texts or too many characters."""
    tokens.forget()
    texts = tokens._counter().texts
    prompt = "You are a helpful assistant. Summarise the following paragraph: " * 3
    first = tokens.count_text(prompt)
    assert texts[prompt] == first == _oracle_count(prompt)
    assert tokens.count_text(prompt) == first  # served from the cache
    unicode_text = "Grüße, 世界! " * 4
    assert tokens.count_text(unicode_text) == _oracle_count(unicode_text) == texts[unicode_text]

    monkeypatch.setattr(tokens, "_CACHED_TEXTS", 8)
    for i in range(20):
        assert tokens.count_text(f"text number {i}") == _oracle_count(f"text number {i}")
        assert len(texts) <= 8
    monkeypatch.setattr(tokens, "_CACHED_TEXT_CHARS", 100)
    for i in range(20):
        tokens.count_text(f"{i} " * 20)
        assert texts.chars <= 100 and texts.chars == sum(map(len, texts))
    tokens.forget()
    assert not texts and texts.chars == 0


def test_concurrent_first_counts_load_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads that count at the same time in a fresh process share one table load."""
    calls: list[int] = []
    real = tokens.read_ranks

    def counting_read(path: Any) -> dict[bytes, int]:
        calls.append(1)
        return real(path)

    monkeypatch.setattr(tokens, "_loaded", None)
    monkeypatch.setattr(tokens, "read_ranks", counting_read)
    start = threading.Barrier(4)
    results: list[int] = []

    def count() -> None:
        start.wait()
        results.append(tokens.count_text("hello world"))

    threads = [threading.Thread(target=count) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [2, 2, 2, 2]
    assert calls == [1]


_LOAD_PROBE = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
from vmx_core import tokens
before = rss()
assert tokens.count_text("Count me, <|endoftext|> included.") > 0
print(rss() - before, "bpe_openai" in sys.modules)
"""


def test_counting_loads_neither_bpe_openai_nor_its_rust_tables() -> None:
    """In a fresh process, counting imports no bpe_openai module and adds well under its ~136 MiB."""
    out = subprocess.run([sys.executable, "-c", _LOAD_PROBE], capture_output=True, text=True, check=True, timeout=60)
    added_mib, imported = out.stdout.split()
    assert imported == "False"
    assert int(added_mib) < 48



def test_a_request_is_counted_exactly_up_to_its_budget_then_extrapolated() -> None:
    """Parts within REQUEST_EXACT_CHARS together are counted exactly; past it the remainder
    is extrapolated at the exact head's own characters-per-token ratio, so a hostile body
    costs bounded CPU and the estimate still tracks the text's density."""
    words = "tokens count " * 100
    assert tokens.count_parts([words, words], exact_chars=10**6) == 2 * tokens.count_text(words)
    assert tokens.count_parts([words, words], exact_chars=len(words)) == 2 * tokens.count_text(words)
    cjk = "汉字统计测试" * 500
    head = tokens.count_text(cjk[:1000])
    estimate = tokens.count_parts([cjk], exact_chars=1000)
    assert estimate == head + math.ceil((len(cjk) - 1000) / max(1000 / head, 1.0))
    exact = tokens.count_text(cjk)
    assert abs(estimate - exact) <= 0.05 * exact


@given(st.lists(st.text(alphabet="ab cd,.\n汉字", max_size=300), max_size=8), st.integers(0, 2000))
def test_request_counts_are_exact_within_the_budget_and_bounded_past_it(parts: list[str], budget: int) -> None:
    """Parts that fit the budget are counted exactly; past it, the estimate is the exact count
    of the text within the budget plus at most one token per remaining character."""
    total = sum(map(len, parts))
    estimate = tokens.count_parts(parts, exact_chars=budget)
    if total <= budget:
        assert estimate == sum(map(tokens.count_text, parts))
        return
    head, left = [], budget
    for part in parts:
        head.append(part[:left])
        left -= len(head[-1])
    exact_head = sum(map(tokens.count_text, head))
    assert exact_head <= estimate <= exact_head + (total - budget)
