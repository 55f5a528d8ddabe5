"""``round(value, digits)`` for the audit row's durations and costs, bit for bit, at half the cost.

``float.__round__`` with digits converts the float to decimal text and back (about 0.3 µs),
and a row rounds six or more values.  Scaling, rounding to an integer and scaling back gives
the same float unless the scaled value lies within a rounding error of a half: the product's
error is at most half an ulp (below 0.0001 under 2**40), so outside that margin the integer is
the correctly rounded one, and dividing it by the exact power of ten is correctly rounded too,
as ``round``'s text-to-float step is.  Near a half, a negative or a huge value, NaN or infinity,
and anything but a float (``round`` keeps an int an int), take ``round`` itself.
"""

from __future__ import annotations

#: Exact powers of ten (every one up to 10**22 is a float).
_SCALE = tuple(10.0**d for d in range(16))
#: Below this a product's rounding error (half its ulp, at most 2**-14) is under 0.0001.
_EXACT_BELOW = 2.0**40


def round_to(value: float, digits: int) -> float:
    """Exactly ``round(value, digits)``, for ``0 <= digits < 16``."""
    if type(value) is float:
        scale = _SCALE[digits]
        scaled = value * scale
        if 0.0 < scaled < _EXACT_BELOW:
            whole = round(scaled)
            if -0.4999 < scaled - whole < 0.4999:
                return whole / scale
        elif scaled == 0.0:  # a stage that did not run; round keeps 0.0 and -0.0 as they are
            return value
    return round(value, digits)
