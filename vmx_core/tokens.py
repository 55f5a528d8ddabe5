"""Input-token counting, computed only when a routing rule or a limit needs the number.

The count is exact o200k_base: the same number as ``bpe_openai``'s ``encode_ordinary`` for any
text up to ``EXACT_LIMIT`` characters, special-token-looking strings such as ``<|endoftext|>``
counted as the ordinary text they are.  It is computed in pure Python from the rank table that
ships inside the ``bpe-openai`` wheel (tiktoken would download it at run time, which fails
offline): vmx reads that file itself instead of calling ``bpe_openai.get_encoding``, which adds
~136 MiB of RSS to every worker, about half the Python rank tables of all three of its encodings
and half its Rust automata (issue 9, docs/performance.md).  vmx's one table costs ~26 MiB,
loaded once per process on the first count.  The one known difference from bpe-openai: the
characters Unicode 17 assigned (and U+0295, which it recategorised) are classified by the
``regex`` module's tables (Unicode 17 in its current releases), bpe-openai's by Unicode 16.

Above ``EXACT_LIMIT`` characters a text is estimated from its length, and a whole request is
counted exactly for its first ``REQUEST_EXACT_CHARS`` characters only, the rest extrapolated at
the ratio of characters to tokens measured on that part: a pure-Python count of a hostile body
(megabytes of text that never splits into common words) would otherwise hold the event loop for
seconds, and no routing rule or reservation needs that precision.
"""

from __future__ import annotations

import binascii
import heapq
import importlib.util
import math
import re
import threading
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import frozen

if TYPE_CHECKING:
    import regex

#: Characters per token measured on English prose and code with o200k_base.
CHARS_PER_TOKEN = 4.0
EXACT_LIMIT = 32_000
#: Characters of one request counted exactly (at worst ~20 ms of CPU, typically ~1 ms).
REQUEST_EXACT_CHARS = 16_000

# o200k_base's pre-tokenisation pattern, as tiktoken publishes it (tiktoken_ext/openai_public.py)
# and bpe-openai repeats it: a text is split into pieces, and byte-pair merging never crosses a
# piece boundary.
_CONTRACTION = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_O200K_SPLIT = "|".join(
    (
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+" + _CONTRACTION,
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*" + _CONTRACTION,
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    )
)

# The same pattern with each class cut down to its ASCII members, for ASCII-only text (most
# prompts, code and JSON): the stdlib engine runs it about 4x faster than `regex` runs the
# Unicode one.  In ASCII, \p{L} is A-Za-z, \p{Lu} A-Z, \p{Ll} a-z, \p{N} 0-9, Lt/Lm/Lo/M are
# empty, and Unicode's White_Space (the \s of bpe-openai's engine) is \t \n \v \f \r and space;
# not \x1c-\x1f, which str.isspace() and a non-ASCII stdlib \s would accept.
_WS = r"\t\n\x0b\x0c\r "
_ASCII_SPLIT = re.compile(
    "|".join(
        (
            r"[^\r\nA-Za-z0-9]?[A-Z]*[a-z]+" + _CONTRACTION,
            r"[^\r\nA-Za-z0-9]?[A-Z]+[a-z]*" + _CONTRACTION,
            r"[0-9]{1,3}",
            rf" ?[^{_WS}A-Za-z0-9]+[\r\n/]*",
            rf"[{_WS}]*[\r\n]+",
            rf"[{_WS}]+(?![^{_WS}])",
            rf"[{_WS}]+",
        )
    ),
    re.ASCII,
)

_DATA_PACKAGE = "bpe_openai"
_DATA_FILE = ("data", "o200k_base.tiktoken.gz")

#: Pieces up to this many characters have their token count remembered: words, numbers and
#: punctuation runs recur across prompts, so most pieces of a request are dictionary hits.
#: With at most ``_CACHE_ENTRIES`` such keys the cache stays under ~2 MiB.
_CACHED_PIECE_CHARS = 32
_CACHE_ENTRIES = 8192
#: Whole texts have their count remembered too, up to this many characters and texts in all:
#: clients resend the same system prompt with every request, and every earlier turn of a
#: conversation with each new one.  A text seen before then costs one hash of it instead of
#: the split (about 200 instructions per character even on the ASCII pattern, the largest
#: part of a routing rule on ``tokens.input``, issue 9) and a lookup per piece.
_CACHED_TEXT_CHARS = 1 << 20
_CACHED_TEXTS = 4096

_ABSORBED = -2  # see merged_count


def count_text(text: str) -> int:
    """o200k_base tokens of ``text``, exact up to ``EXACT_LIMIT`` characters."""
    if len(text) > EXACT_LIMIT:
        return int(len(text) / CHARS_PER_TOKEN) + 1
    if not text:
        return 0
    counter = _counter()
    n = counter.texts.get(text)
    if n is not None:
        return n
    if text.isascii():  # O(1): CPython keeps the flag on every str
        pieces = _ASCII_SPLIT.findall(text)
    else:
        pieces = counter.split.findall(_well_formed(text))
    # A C-level loop: only pieces never seen before run Python code (PieceCounts.__missing__).
    n = sum(map(counter.counts.__getitem__, pieces))
    counter.texts.remember(text, n)
    return n


def forget() -> None:
    """Empty the counts remembered (of pieces and of whole texts): what a count of text never
    seen costs (benchmarks, tests)."""
    counter = _counter()
    counter.counts.clear()
    counter.texts.clear()


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
    return 3 + per_message + count_parts(parts)


def count_parts(parts: Iterable[str], exact_chars: int = REQUEST_EXACT_CHARS) -> int:
    """The tokens of ``parts`` together: exact for their first ``exact_chars`` characters, the
    rest extrapolated at the characters-per-token ratio of that exactly counted head (or
    ``CHARS_PER_TOKEN`` when there is none)."""
    budget = exact_chars
    counted_chars = counted = rest = 0
    for part in parts:
        if len(part) <= budget:
            counted += count_text(part)
            counted_chars += len(part)
            budget -= len(part)
        else:
            if budget:
                counted += count_text(part[:budget])
                counted_chars += budget
            rest += len(part) - budget
            budget = 0
    if rest:
        ratio = counted_chars / counted if counted else CHARS_PER_TOKEN
        counted += math.ceil(rest / max(ratio, 1.0))
    return counted


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


def _well_formed(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD and surrogate pairs joined, as
    bpe-openai does before encoding (they have no UTF-8 form)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class PieceCounts(dict[str, int]):
    """Token count of each pre-tokenised piece, computed on first sight and remembered for
    short pieces.  Emptied when full rather than kept in LRU order: clearing is safe while
    other threads read, and a cold start costs one pass of misses."""

    def __init__(self, ranks: Mapping[bytes, int]) -> None:
        super().__init__()
        self.ranks = ranks

    def __missing__(self, piece: str) -> int:
        data = piece.encode("utf-8")
        # Most English word pieces are themselves tokens.
        n = 1 if data in self.ranks else merged_count(data, self.ranks)
        if len(piece) <= _CACHED_PIECE_CHARS:
            if len(self) >= _CACHE_ENTRIES:
                self.clear()
            self[piece] = n
        return n


class TextCounts(dict[str, int]):
    """Token count of whole texts counted before, up to ``_CACHED_TEXTS`` texts and
    ``_CACHED_TEXT_CHARS`` characters; emptied when full, like :class:`PieceCounts`."""

    def __init__(self) -> None:
        super().__init__()
        self.chars = 0

    def remember(self, text: str, n: int) -> None:
        if len(self) >= _CACHED_TEXTS or self.chars + len(text) > _CACHED_TEXT_CHARS:
            self.clear()
        self[text] = n
        self.chars += len(text)

    def clear(self) -> None:
        super().clear()
        self.chars = 0


def merged_count(data: bytes, ranks: Mapping[bytes, int]) -> int:
    """How many tokens byte-pair merging leaves of ``data``: starting from single bytes,
    repeatedly merge the adjacent pair whose concatenation has the lowest rank (the leftmost
    of equals), until no adjacent pair is a token.

    The textbook loop rescans every pair after each merge, O(n²): a 10 kB run without split
    points took 5-7 s in Python.  Here candidate pairs wait in a heap ordered by (rank,
    start), which pops them in exactly that order, and parts form a linked list: O(n log n).
    """
    n = len(data)
    # Part `i` spans data[i:after[i]]; before[i] is the start of the part on its left (-1 for
    # the first), or _ABSORBED once the part has been merged into that left neighbour.
    after = list(range(1, n + 1))
    before = list(range(-1, n - 1))
    heap: list[tuple[int, int, int]] = []
    for i in range(n - 1):
        rank = ranks.get(data[i : i + 2])
        if rank is not None:
            heap.append((rank, i, i + 2))
    heapq.heapify(heap)
    parts = n
    while heap:
        _, start, end = heapq.heappop(heap)
        right = after[start]
        # A stale pair: its left part was absorbed, or one of its parts grew since it was
        # pushed.  Parts only grow, so an unchanged end means both parts are unchanged.
        if before[start] == _ABSORBED or right == n or after[right] != end:
            continue
        after[start] = end
        before[right] = _ABSORBED
        parts -= 1
        if end < n:
            before[end] = start
            following = after[end]
            rank = ranks.get(data[start:following])
            if rank is not None:
                heapq.heappush(heap, (rank, start, following))
        previous = before[start]
        if previous >= 0:
            rank = ranks.get(data[previous:end])
            if rank is not None:
                heapq.heappush(heap, (rank, previous, end))
    return parts


@frozen
class _Counter:
    counts: PieceCounts
    split: regex.Pattern[str]  # for text that is not ASCII
    texts: TextCounts


_loaded: _Counter | None = None
_load_lock = threading.Lock()


def preload() -> None:
    """Load the rank table now rather than on the first count (a server settling its start-up
    heap before traffic; see vmx_server's ``create_app(settle_heap=True)``)."""
    _counter()


def _counter() -> _Counter:
    """The rank table and Unicode split pattern, loaded on first use, once per process."""
    global _loaded
    counter = _loaded
    if counter is None:
        # The lock makes threads that count concurrently at start-up (an embedding
        # application's, a worker pool's) wait for one load instead of each building its own
        # 26 MiB table.
        with _load_lock:
            if _loaded is None:
                import regex

                _loaded = _Counter(PieceCounts(read_ranks(data_file())), regex.compile(_O200K_SPLIT), TextCounts())
            counter = _loaded
    return counter


def data_file() -> Path:
    """``o200k_base.tiktoken.gz`` inside the installed bpe-openai package.

    Located with ``find_spec``, which does not import the package: ``import bpe_openai``
    alone parses the rank tables of all three of its encodings (~66 MiB, 0.4 s).
    """
    spec = importlib.util.find_spec(_DATA_PACKAGE)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise RuntimeError("token counting needs the o200k_base table of the bpe-openai package, which is not installed")
    path = Path(next(iter(locations))).joinpath(*_DATA_FILE)
    if not path.is_file():
        raise RuntimeError(f"token counting needs {path}, which this bpe-openai version does not ship")
    return path


def read_ranks(path: Path) -> dict[bytes, int]:
    """Parse a gzipped tiktoken rank file: one ``base64(token) rank`` per line."""
    ranks: dict[bytes, int] = {}
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # 16+: gzip framing
    tail = b""
    # Block by block so that the 3.6 MB of text and its 200,000 line objects are never all
    # alive at once: whole, they raise the process's RSS by ~10 MiB more, for good.
    with path.open("rb") as raw:
        while block := raw.read(1 << 16):
            lines = (tail + inflate.decompress(block)).split(b"\n")
            tail = lines.pop()
            _add_ranks(ranks, lines)
    if not inflate.eof:
        raise ValueError(f"{path} is truncated")
    _add_ranks(ranks, (tail + inflate.flush()).split(b"\n"))
    return ranks


def _add_ranks(ranks: dict[bytes, int], lines: Iterable[bytes]) -> None:
    for line in lines:
        if line:
            token, rank = line.split()
            ranks[binascii.a2b_base64(token)] = int(rank)
