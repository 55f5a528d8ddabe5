"""``redis://`` and ``redis+cluster://``: counters shared by every gateway process and host.

Each admission is one ``EVALSHA`` of ``lua/admit.lua`` (shipped as package data), so the check
and the charge of every counter happen in one atomic step on the server.  On a cluster, every
key of one admission carries the same hash tag (see :func:`vmx_core.capacity.limits.tenant_tag`;
the pool counters too), so the script's keys live in one slot, as Redis Cluster requires.

Redis errors are wrapped in :class:`CapacityStoreError` here, at the boundary: the gate decides
what an unreachable store means (``capacity.on_store_error``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from attrs import define, field

from vmx_core.capacity.allocation import UNMET, PoolCheck, PoolReading
from vmx_core.capacity.resp import RespClient, RespError
from vmx_core.capacity.store import Adjustment, Admission, CapacityStoreError
from vmx_core.capacity.window import Check, Counts

#: A capacity check sits on the request path: fail fast and let on_store_error decide,
#: rather than stall every request for the driver's 5 s default.
DEFAULT_TIMEOUT_S = 0.5
#: Store calls in flight per process (and connections per server): beyond it calls queue here
#: instead of failing with the driver's "too many connections".
MAX_IN_FLIGHT = 64


def _buckets(flat: list[Any]) -> dict[int, tuple[int, int]]:
    """``{bucket, r, t, bucket, r, t, ...}`` from the script, as a dict."""
    return {int(flat[j]): (int(flat[j + 1]), int(flat[j + 2])) for j in range(0, len(flat), 3)}


def _script(name: str) -> tuple[str, str]:
    text = resources.files("vmx_core.capacity").joinpath(f"lua/{name}.lua").read_text("utf-8")
    return text, hashlib.sha1(text.encode()).hexdigest()


ADMIT = _script("admit")
ADJUST = _script("adjust")


@define
class RedisStore:
    client: Any
    uri: str = ""
    cluster: bool = False
    _slots: asyncio.Semaphore = field(factory=lambda: asyncio.Semaphore(MAX_IN_FLIGHT))
    _init_lock: asyncio.Lock = field(factory=asyncio.Lock)
    _initialized: bool = False

    @classmethod
    def from_uri(cls, uri: str) -> RedisStore:
        """``redis://[:pw@]host:port/db[?socket_timeout=S]`` (``rediss://`` for TLS) or
        ``redis+cluster://h1:p1,h2:p2``."""
        parts = urlsplit(uri)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        timeout = float(query.pop("socket_timeout", DEFAULT_TIMEOUT_S))
        if parts.scheme != "redis+cluster":
            return cls(RespClient(parts._replace(query="").geturl(), timeout=timeout), uri)
        try:
            from redis.asyncio.cluster import ClusterNode, RedisCluster
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:  # the optional extra is not installed
            raise CapacityStoreError(f"storage.capacity {uri.split(':')[0]}:// needs `pip install vmx[redis]`") from exc
        nodes = []
        for hostport in parts.netloc.rsplit("@", 1)[-1].split(","):
            host, _, port = hostport.rpartition(":")
            nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))
        client = RedisCluster(
            startup_nodes=nodes,
            password=parts.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # No driver-level retries: a retry loop during an outage is latency on every request.
            retry=Retry(NoBackoff(), 0),
            max_connections=MAX_IN_FLIGHT,
        )
        return cls(client, uri, True)

    async def admit(self, checks: Sequence[Check], now: float, pool: PoolCheck | None = None) -> Admission:
        if not checks:
            return Admission(True, ())
        n, m = len(checks), len(pool.used_keys) if pool is not None else 0
        args: list[Any] = [n, m]
        for c in checks:
            w = c.window
            args += [
                *w.span(now),  # oldest, bucket
                -1 if c.max_requests is None else c.max_requests,
                -1 if c.max_tokens is None else c.max_tokens,
                c.requests,
                c.tokens,
                w.ttl_ms(),
            ]
        keys = [c.key for c in checks]
        if pool is not None:
            uw = pool.used_window
            args += [pool.budget + 1, pool.asker + 1, 1 if pool.record_unmet else 0]
            args += [uw.oldest(now), uw.bucket(now), uw.ttl_ms(), UNMET.oldest(now), UNMET.bucket(now), UNMET.ttl_ms()]
            for lo, hi in zip(pool.minimums, pool.maximums, strict=True):
                args += [lo, hi]
            keys += [*pool.used_keys, *pool.unmet_keys]
        raw = await self._run(ADMIT, keys, args)
        admitted = int(raw[0]) == 1
        sums = [int(v) for v in raw[1 : 1 + 2 * n + 2 * m]]
        details = raw[1 + 2 * n + 2 * m :]
        counts = tuple(
            Counts(sums[2 * i], sums[2 * i + 1], {} if admitted else _buckets(details[i])) for i in range(n)
        )
        reading = None
        if pool is not None:
            reading = PoolReading(
                counts[pool.budget].tokens,
                tuple(sums[2 * n : 2 * n + m]),
                tuple(sums[2 * n + m :]),
                {} if admitted else _buckets(details[n]),
            )
        return Admission(admitted, counts, reading)

    async def adjust(self, adjustments: Sequence[Adjustment]) -> None:
        if not adjustments:
            return
        args: list[Any] = []
        for a in adjustments:
            args += [a.bucket, a.oldest, a.requests, a.tokens, a.ttl_ms]
        await self._run(ADJUST, [a.key for a in adjustments], args)

    async def usage(self, checks: Sequence[Check], now: float) -> tuple[Counts, ...]:
        # A read is an admission that charges nothing against no limit.
        reads = [Check(c.key, c.window, None, None, 0, 0) for c in checks]
        return (await self.admit(reads, now)).counts

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        except Exception:  # closing a client of a server that is gone must not fail shutdown
            pass

    async def _initialize(self) -> None:
        # redis-py's cluster client discovers the slots on first use; many first uses at once
        # race each other (connections get dropped), so one coroutine does it for all.
        async with self._init_lock:
            if not self._initialized:
                await self.client.initialize()
                self._initialized = True

    async def _run(self, script: tuple[str, str], keys: list[str], args: list[Any]) -> Any:
        text, sha = script
        try:
            if self.cluster and not self._initialized:
                await self._initialize()
            async with self._slots:
                try:
                    return await self.client.evalsha(sha, len(keys), *keys, *args)
                except Exception as exc:
                    if not _noscript(exc):
                        raise
                    # First use on this server (or after a restart): EVAL runs and caches it.
                    return await self.client.eval(text, len(keys), *keys, *args)
        except Exception as exc:
            if not _driver_error(exc):
                raise
            where = self.uri.split("@")[-1]
            detail = f": {exc}" if not isinstance(exc, OSError) else ""
            raise CapacityStoreError(f"capacity store {where!r}: {type(exc).__name__}{detail}") from exc


def _noscript(exc: Exception) -> bool:
    if isinstance(exc, RespError):
        return exc.noscript
    return type(exc).__name__ == "NoScriptError"  # redis-py's, for the cluster client


def _driver_error(exc: Exception) -> bool:
    """What either client raises for a store that fails: wrapped at this boundary."""
    if isinstance(exc, (RespError, OSError)):
        return True
    try:
        from redis.exceptions import RedisClusterException, RedisError
    except ImportError:
        return False
    # RedisClusterException ("cannot be connected", every node down) is not a RedisError.
    return isinstance(exc, (RedisError, RedisClusterException))
