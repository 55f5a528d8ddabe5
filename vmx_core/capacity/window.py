"""The sliding-window strategy: how a limit's period becomes buckets, and how a store's counts
become an admission decision, a ``Retry-After`` and the ``x-ratelimit-*`` numbers.

A window of length ``T`` is cut into ``K`` buckets of width ``s = T / K``.  At time ``now`` the
counted buckets are the ``K + 1`` that overlap ``(now - T, now]`` (the oldest one partly).  The
count is therefore never *below* the true number of admissions in any sliding interval of
length ``T``: admitting only while ``count + cost <= limit`` means no interval of length ``T``
ever holds more than the limit, wherever it starts (no fixed-window boundary burst).  The price
is that an admission is forgotten between ``T`` and ``T + s`` after it was made, never before.

The stores only execute what this module plans (sum the buckets from ``oldest`` on, compare,
add to ``bucket``), the way the ``limits`` library keeps strategies apart from storage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from attrs import define, field, frozen

#: Buckets per window: the forgetting delay is at most 1/60 of the period (1 s for a minute).
BUCKETS = 60

PERIOD_SECONDS: Mapping[str, float] = {
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 7 * 86400.0,
    "month": 30 * 86400.0,  # a month is 30 days: windows slide, calendar months do not
    "lifetime": 0.0,
}
#: What a refused ``lifetime`` limit answers as Retry-After: it never frees up by itself.
LIFETIME_RETRY_AFTER = 86400


@frozen
class Window:
    """The geometry of one period: bucket width and count (``width == 0``: one bucket forever)."""

    period: str
    seconds: float
    width: float
    buckets: int
    #: :meth:`ttl_ms`, worked out once: stores ask for it with every charge.
    _ttl_ms: int = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        ttl = 0 if self.width == 0 else math.ceil((self.seconds + 2 * self.width) * 1000)
        object.__setattr__(self, "_ttl_ms", ttl)

    @classmethod
    def of(cls, period: str) -> Window:
        seconds = PERIOD_SECONDS[period]
        if seconds == 0:
            return cls(period, 0.0, 0.0, 1)
        return cls(period, seconds, seconds / BUCKETS, BUCKETS)

    def bucket(self, now: float) -> int:
        return 0 if self.width == 0 else math.floor(now / self.width)

    def oldest(self, now: float) -> int:
        """The oldest bucket still counted at ``now`` (it overlaps ``(now - T, now]``)."""
        return 0 if self.width == 0 else math.floor(now / self.width) - self.buckets

    def span(self, now: float) -> tuple[int, int]:
        """(:meth:`oldest`, :meth:`bucket`) at ``now`` in one division: a store needs both per check."""
        if self.width == 0:
            return 0, 0
        bucket = math.floor(now / self.width)
        return bucket - self.buckets, bucket

    def expires_at(self, bucket: int) -> float:
        """When ``bucket`` stops being counted."""
        return math.inf if self.width == 0 else (bucket + self.buckets + 1) * self.width

    def ttl_ms(self) -> int:
        """How long a store keeps an idle counter (0: forever)."""
        return self._ttl_ms


# ``@define`` rather than ``@frozen`` (``Check`` and ``Counts``): one of each is made per limit
# per admission, and a frozen class's ``__init__`` sets each field through ``object.__setattr__``,
# several times the cost of a plain slot store (issue 9).  Never mutated.
@define
class Check:
    """One counter of one admission: where it lives, its limits, and what this request adds."""

    key: str
    window: Window
    max_requests: int | None
    max_tokens: int | None
    requests: int
    tokens: int


@define
class Counts:
    """What a store read for one check: sums over the counted buckets, before this charge."""

    requests: int
    tokens: int
    #: bucket -> (requests, tokens); filled only when the admission was refused.
    buckets: Mapping[int, tuple[int, int]] = field(factory=dict)


def fits(check: Check, counts: Counts, tokens: bool = True) -> bool:
    """Whether the charge fits; ``tokens=False`` looks at requests only (a budget whose tokens
    the pool gate decides)."""
    if check.max_requests is not None and counts.requests + check.requests > check.max_requests:
        return False
    return not (tokens and check.max_tokens is not None and counts.tokens + check.tokens > check.max_tokens)


def retry_after(check: Check, counts: Counts, now: float) -> float:
    """Seconds until ``check`` would fit again if nobody else was admitted meanwhile."""
    w = check.window
    if w.width == 0:
        return float(LIFETIME_RETRY_AFTER)
    need_r = 0 if check.max_requests is None else counts.requests + check.requests - check.max_requests
    need_t = 0 if check.max_tokens is None else counts.tokens + check.tokens - check.max_tokens
    if (check.max_requests is not None and check.requests > check.max_requests) or (
        check.max_tokens is not None and check.tokens > check.max_tokens
    ):
        return w.seconds  # larger than the limit itself: no wait is long enough; say one window
    freed_r = freed_t = 0
    for bucket in sorted(counts.buckets):
        if freed_r >= need_r and freed_t >= need_t:
            break
        r, t = counts.buckets[bucket]
        freed_r += r
        freed_t += t
        if freed_r >= need_r and freed_t >= need_t:
            return max(0.0, w.expires_at(bucket) - now)
    return 0.0 if freed_r >= need_r and freed_t >= need_t else w.seconds


def retry_after_header(seconds: float) -> str:
    """DESIGN §6: an integer number of seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


# ``@define`` rather than ``@frozen``: one is made per admission, and a frozen class's ``__init__`` sets each
# field through ``object.__setattr__``, several times the cost of a plain slot store (issue 9).
# Never mutated.
@define
class Remaining:
    """The ``x-ratelimit-*`` numbers: the tightest requests limit and the tightest tokens limit."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None

    @classmethod
    def tightest(cls, checks: Sequence[Check], counts: Sequence[Counts], charged: bool) -> Remaining:
        lr = rr = lt = rt = None
        for check, c in zip(checks, counts, strict=True):
            # (Comparisons rather than max(0, ...): this runs per limit on every admission.)
            if check.max_requests is not None:
                left = check.max_requests - c.requests - (check.requests if charged else 0)
                if left < 0:
                    left = 0
                if rr is None or left < rr:
                    lr, rr = check.max_requests, left
            if check.max_tokens is not None:
                left = check.max_tokens - c.tokens - (check.tokens if charged else 0)
                if left < 0:
                    left = 0
                if rt is None or left < rt:
                    lt, rt = check.max_tokens, left
        return cls(lr, rr, lt, rt)

    def headers(self) -> dict[str, str]:
        h = {}
        if self.limit_requests is not None:
            h["x-ratelimit-limit-requests"] = str(self.limit_requests)
            h["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
        if self.limit_tokens is not None:
            h["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            h["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
        return h
