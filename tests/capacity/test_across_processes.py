"""Real ``vmx serve`` processes sharing one Redis: limits hold globally, and survive outages."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import KEY
from tests.e2e.conftest import e2e_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.services.redis import RedisCluster, RedisServer
from vmx_core.tokens import estimate_request

MESSAGES = [{"role": "user", "content": "count me exactly once"}]


def patient(redis_url: str) -> str:
    """A store URI whose socket timeout outlasts a 1,000-request burst on a busy 2-core box:
    with the 0.5 s default, a slow answer counts as a store error and `on_store_error: allow`
    admits the request uncounted, which is right in production but not what this test is about."""
    return redis_url + ("&" if "?" in redis_url else "?") + "socket_timeout=10"


def limited_config(upstream: FakeOpenAI, store: str, limit: dict[str, Any], model: str = "gpt-4o-mini", **capacity: Any) -> dict[str, Any]:
    raw = e2e_config(upstream, chat={"model": {"connection": "up", "model": model}})
    raw["storage"] = {"capacity": store}
    raw["capacity"] = capacity
    raw["workspaces"]["acme"]["environments"]["prod"]["connections"]["up"]["capacity"] = [limit]
    return raw


async def fire(urls: list[str], n: int, body: dict[str, Any]) -> Counter[int]:
    """``n`` concurrent chat requests spread round-robin over ``urls``; the statuses."""
    headers = {"authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:

        async def one(i: int) -> int:
            async with http.post(f"{urls[i % len(urls)]}/chat/completions", json=body, headers=headers) as resp:
                text = await resp.text()
                if resp.status == 200 and body.get("stream"):
                    assert text.rstrip().endswith("data: [DONE]"), text[-200:]
                if resp.status == 429:
                    assert json.loads(text)["error"]["code"] == "resource_exhausted"
                    assert int(resp.headers["retry-after"]) >= 1
                return resp.status

        return Counter(await asyncio.gather(*(one(i) for i in range(n))))


async def test_four_processes_admit_exactly_the_request_limit(upstream: FakeOpenAI, vmx_factory: Any, redis_url: str) -> None:
    """1,000 concurrent requests over 4 processes, 100 RPM on the connection: exactly 100 pass."""
    await _flush(redis_url)
    raw = limited_config(upstream, patient(redis_url), {"period": "minute", "requests": 100})
    procs = [await vmx_factory(raw) for _ in range(4)]
    statuses = await fire([p.base_url() for p in procs], 1000, {"model": "chat", "messages": MESSAGES})
    assert statuses == Counter({200: 100, 429: 900})
    assert len(upstream.requests) == 100


async def test_four_processes_admit_exactly_the_token_limit_when_streaming(upstream: FakeOpenAI, vmx_factory: Any, redis_url: str) -> None:
    """Streamed answers under a TPM limit of 100 reservations: exactly 100 of 1,000 pass."""
    await _flush(redis_url)
    body = {"model": "chat", "messages": MESSAGES, "max_tokens": 40, "stream": True}
    reserve = estimate_request(body) + 40
    # The upstream reports exactly the reservation, so reconciling frees nothing mid-test.
    raw = limited_config(
        upstream, patient(redis_url), {"period": "minute", "tokens": 100 * reserve}, model=f"usage-{reserve - 40}-40"
    )
    procs = [await vmx_factory(raw) for _ in range(4)]
    statuses = await fire([p.base_url() for p in procs], 1000, body)
    assert statuses == Counter({200: 100, 429: 900})


async def test_redis_outage_follows_on_store_error_and_recovers(upstream: FakeOpenAI, vmx_factory: Any, tmp_path: Path) -> None:
    """Redis stops: `allow` serves, `deny` refuses; Redis returns: limits apply again."""
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        limit = {"period": "minute", "requests": 2}
        allow = await vmx_factory(limited_config(upstream, redis.url, limit, on_store_error="allow"))
        deny = await vmx_factory(limited_config(upstream, redis.url, limit, on_store_error="deny"))
        body = {"model": "chat", "messages": MESSAGES}
        assert await fire([allow.base_url(), deny.base_url(), allow.base_url()], 3, body) == Counter({200: 2, 429: 1})

        redis.stop()
        assert await fire([allow.base_url()], 5, body) == Counter({200: 5})
        assert await fire([deny.base_url()], 2, body) == Counter({429: 2})

        redis.start()  # an empty Redis on the same port: the clients reconnect by themselves
        assert await fire([allow.base_url(), deny.base_url()], 4, body) == Counter({200: 2, 429: 2})
    finally:
        redis.stop()
    assert "capacity_store_error" in allow.output()


async def test_redis_cluster_outage_follows_on_store_error_and_recovers(upstream: FakeOpenAI, vmx_factory: Any, tmp_path: Path) -> None:
    """The whole Redis Cluster stops: `allow` serves, `deny` refuses, no driver error leaks;
    the cluster returns on the same ports: limits apply again."""
    cluster = RedisCluster(tmp_path)
    cluster.start()
    try:
        limit = {"period": "minute", "requests": 2}
        allow = await vmx_factory(limited_config(upstream, cluster.url, limit, on_store_error="allow"))
        deny = await vmx_factory(limited_config(upstream, cluster.url, limit, on_store_error="deny"))
        body = {"model": "chat", "messages": MESSAGES}
        assert await fire([allow.base_url(), deny.base_url(), allow.base_url()], 3, body) == Counter({200: 2, 429: 1})

        cluster.stop()
        assert await fire([allow.base_url()], 3, body) == Counter({200: 3})
        assert await fire([deny.base_url()], 2, body) == Counter({429: 2})

        cluster.restart()
        assert await fire([allow.base_url(), deny.base_url()], 4, body) == Counter({200: 2, 429: 2})
    finally:
        cluster.stop()
    assert "capacity_store_error" in allow.output() and "Traceback" not in allow.output() + deny.output()


async def _flush(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    await client.flushall()
    await client.aclose()
