"""The ``/ui/`` dashboard in headless Chromium: it renders charts whose numbers are the usage API's."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.audit.conftest import make_row
from tests.fakes.browser import Chromium
from tests.fakes.server import VmxProcess
from vmx_core.audit.rows import iso
from vmx_core.audit.store import open_store

TOKEN = "adm-dashboard-1"
CHARTS = ("c-requests", "c-tokens", "c-cost", "c-errors", "c-latency", "c-ttft")


def seeded_rows(n: int = 60) -> list[dict[str, Any]]:
    """``n`` rows over the last 23 hours: two resources, two connections, some errors and streams."""
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for i in range(n):
        resource, connection, model = ("chat", "up", "gpt-4o-mini") if i % 3 else ("summarize", "backup", "gpt-4o")
        failed = i % 10 == 0
        prompt, completion = rng.randint(5, 400), rng.randint(1, 200)
        rows.append(make_row(
            timestamp=iso(now - dt.timedelta(minutes=rng.randint(1, 23 * 60))), resource=resource,
            connection=connection, model=model, status_code=502 if failed else 200,
            prompt_tokens=None if failed else prompt, completion_tokens=None if failed else completion,
            total_tokens=None if failed else prompt + completion, cost=None if failed else round((prompt + completion) * 1e-6, 10),
            duration_ms=float(rng.randint(50, 2000)), stream=i % 2 == 0, ttft_ms=float(rng.randint(20, 400)) if i % 2 == 0 else None,
        ))
    return rows


@pytest.fixture
async def dashboard_server(tmp_path: Path, vmx_factory: Any) -> tuple[VmxProcess, list[dict[str, Any]]]:
    """A ``vmx serve`` whose audit database already holds the seeded rows."""
    db = tmp_path / "seed.db"
    rows = seeded_rows()
    store = open_store(f"sqlite:///{db}")
    await store.connect()
    await store.write(rows)
    await store.aclose()
    config = {"storage": {"audit": f"sqlite:///{db}"}, "workspaces": {"acme": {"environments": {"prod": {}}}}}
    proc: VmxProcess = await vmx_factory(config, {"VMX_ADMIN_TOKEN": TOKEN})
    return proc, rows


READ_PAGE = """({
  state: document.body.dataset.state,
  tiles: Object.fromEntries([...document.querySelectorAll('.tile output')].map(o => [o.id, o.dataset.value])),
  charts: Object.fromEntries([...document.querySelectorAll('svg[id^="c-"]')].map(s => [s.id, {
      paths: s.querySelectorAll('path').length, series: [...s.querySelectorAll('path')].map(p => p.dataset.series),
      points: Number(s.dataset.points), total: Number(s.dataset.total)}])),
  resources: Object.fromEntries([...document.querySelectorAll('#b-resource tbody tr')].map(tr => [tr.dataset.key, Number(tr.dataset.requests)])),
  models: [...document.querySelectorAll('#b-model tbody tr')].map(tr => tr.dataset.key),
})"""


async def test_dashboard_renders_the_usage_of_a_server_with_data(
    dashboard_server: tuple[VmxProcess, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """After the admin token is entered, every chart has SVG paths and the totals equal the usage API's."""
    proc, rows = dashboard_server
    browser = Chromium(tmp_path / "profile")
    await browser.start()
    try:
        await browser.navigate(f"{proc.url}/ui/?workspace=acme&environment=prod&range=24h")
        first = await browser.evaluate("window.vmxRendered")
        assert first == {"state": "error", "status": 401}  # no token yet
        typed = await browser.evaluate(
            f"document.getElementById('token').value = {TOKEN!r};"
            "document.querySelector('#auth button[type=submit]').click(); window.vmxRendered"
        )
        assert typed == {"state": "ready"}
        page = await browser.evaluate(READ_PAGE)
        assert await browser.evaluate("sessionStorage.getItem('vmx.adminToken')") == TOKEN
        await browser.screenshot(tmp_path / "dashboard.png")
    finally:
        await browser.close()

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        body = {"granularity": "hour", "metrics": {"requests": "sum", "total_tokens": "sum", "cost": "sum", "errors": "sum"},
                "filter": {"start": "25h"}}
        async with http.post(proc.url + "/v1/request-usage/acme/prod", json=body) as resp:
            api = (await resp.json())["data"]
        async with http.get(proc.url + "/ui", allow_redirects=False) as resp:
            assert resp.status == 308 and resp.headers["location"] == "/ui/"
        async with http.get(proc.url + "/ui/app.js") as resp:
            assert resp.status == 200 and "javascript" in resp.headers["content-type"]

    ok = [r for r in rows if r["status_code"] == 200]
    assert sum(p["requests"] for p in api) == len(rows)
    assert page["state"] == "ready"
    assert float(page["tiles"]["t-requests"]) == len(rows) == sum(p["requests"] for p in api)
    assert float(page["tiles"]["t-tokens"]) == sum(r["total_tokens"] for r in ok) == sum(p["total_tokens"] for p in api)
    assert float(page["tiles"]["t-cost"]) == pytest.approx(sum(r["cost"] for r in ok))
    assert float(page["tiles"]["t-errors"]) == pytest.approx(100 * (len(rows) - len(ok)) / len(rows))
    assert float(page["tiles"]["t-latency"]) == pytest.approx(sum(r["duration_ms"] for r in rows) / len(rows))
    for chart in CHARTS:
        assert page["charts"][chart]["paths"] >= 1, chart
        assert page["charts"][chart]["points"] in (24, 25)  # hourly buckets over 24 hours
    assert page["charts"]["c-requests"]["total"] == len(rows)
    assert page["charts"]["c-latency"]["series"] == ["p50", "p95", "p99"]
    assert page["charts"]["c-ttft"]["series"] == ["p50", "p95"]
    assert page["resources"] == {"chat": sum(r["resource"] == "chat" for r in rows),
                                 "summarize": sum(r["resource"] == "summarize" for r in rows)}
    assert sorted(page["models"]) == ["gpt-4o", "gpt-4o-mini"]
    png = (tmp_path / "dashboard.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
