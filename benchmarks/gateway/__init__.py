"""The side-by-side gateway benchmark behind ``make bench`` (issue 9).

One fast fake OpenAI upstream, the targets in front of it (``direct``, ``floor``, ``vmx`` and
its variants, Portkey, LiteLLM), closed-loop throughput with wrk, open-loop latency with a
small client of our own (wrk cannot see the first byte of a stream), CPU and RSS from /proc.
Run it with ``make bench`` (``QUICK=1`` for a few minutes); see docs/performance.md.
"""
