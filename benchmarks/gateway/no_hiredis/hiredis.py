"""Put on PYTHONPATH to hide the installed hiredis: redis-py then parses replies in Python
(the `redis-parser` variant in benchmarks/gateway/variants/)."""

raise ImportError("hiredis hidden for the benchmark")
