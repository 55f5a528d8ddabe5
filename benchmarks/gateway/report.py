"""From raw measurements to the summary, the markdown table and the throughput/p99 plot."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

CASES = (False, True)


def _case(stream: bool) -> str:
    return "stream" if stream else "whole"


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """Per target and case: throughput per connection count (median over rounds), CPU per
    request (median over all runs), open-loop p50/p99, and the same minus ``direct``."""
    out: dict[str, Any] = {}
    lat_direct: dict[str, dict[str, float]] = {}
    for name in raw["targets"]:
        per: dict[str, Any] = {}
        for stream in CASES:
            runs = [r for r in raw["throughput"] if r["target"] == name and r["stream"] == stream]
            by_conns = {}
            for conns in sorted({r["connections"] for r in runs}):
                rs = [r for r in runs if r["connections"] == conns]
                by_conns[str(conns)] = {
                    "rps": statistics.median(r["rps"] for r in rs),
                    "p99_ms": statistics.median(r["p99_us"] for r in rs) / 1000,
                    "errors": sum(r["errors"] for r in rs),
                }
            cpu = [r["cpu_ms_per_request"] for r in runs if r["cpu_ms_per_request"] is not None]
            lat = [s for s in raw["latency"] if s["target"] == name and s["stream"] == stream]
            ok = [s for s in lat if s["status"] == 200]
            overhead = [s["overhead_ms"] for s in ok if s["overhead_ms"] is not None]
            key = "ttfb_ms" if stream else "total_ms"
            per[_case(stream)] = {
                "throughput": by_conns,
                "cpu_ms_per_request": statistics.median(cpu) if cpu else None,
                "latency": {
                    "samples": len(lat), "errors": len(lat) - len(ok),
                    "total_p50_ms": _pct([s["total_ms"] for s in ok], 0.5) if ok else None,
                    "total_p99_ms": _pct([s["total_ms"] for s in ok], 0.99) if ok else None,
                    "ttfb_p50_ms": _pct([s["ttfb_ms"] for s in ok], 0.5) if ok else None,
                    "ttfb_p99_ms": _pct([s["ttfb_ms"] for s in ok], 0.99) if ok else None,
                    "headline": key,
                    "self_reported_overhead_p50_ms": statistics.median(overhead) if overhead else None,
                },
            }
        mem0 = raw["memory_after_warmup"].get(name)
        mem1 = raw["memory_end"].get(name)
        served = sum(r["requests"] for r in raw["throughput"] if r["target"] == name)
        starts = raw["cold_start_s"].get(name)
        per["memory"] = {
            "rss_after_warmup_mib": mem0["rss_kib"] / 1024 if mem0 else None,
            "rss_end_mib": mem1["rss_kib"] / 1024 if mem1 else None,
            "peak_rss_mib": mem1["peak_rss_kib"] / 1024 if mem1 else None,
            "requests_served": served,
        }
        per["cold_start_s"] = statistics.median(starts) if starts else None
        out[name] = per
        if name == "direct":
            lat_direct = {c: per[c]["latency"] for c in ("whole", "stream")}
    for per in out.values():
        for c in ("whole", "stream"):
            lat = per[c]["latency"]
            for k in ("total_p50_ms", "total_p99_ms", "ttfb_p50_ms", "ttfb_p99_ms"):
                base = lat_direct.get(c, {}).get(k)
                lat["added_" + k] = lat[k] - base if lat[k] is not None and base is not None else None
    out["_targets"] = goals(out)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def goals(s: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    rows: list[dict[str, Any]] = []

    def get(name: str, *path: str) -> Any:
        node: Any = s.get(name)
        for p in path:
            if node is None:
                return None
            node = node.get(p)
        return node

    def add(goal: str, value: float | None, limit: float, fmt: str, lower_is_better: bool = True) -> None:
        met = None if value is None else (value <= limit if lower_is_better else value >= limit)
        rows.append({"goal": goal, "value": value, "limit": limit, "met": met, "fmt": fmt})

    for c in ("whole", "stream"):
        add(f"vmx CPU/request ÷ floor ({c})",
            _ratio(get("vmx", c, "cpu_ms_per_request"), get("floor", c, "cpu_ms_per_request")), 1.5, "{:.2f}x")
    vmx16 = get("vmx", "whole", "throughput", "16", "rps")
    add("vmx ÷ Portkey throughput (whole, 16 conns)", _ratio(vmx16, get("portkey", "whole", "throughput", "16", "rps")),
        1.5, "{:.2f}x", lower_is_better=False)
    add("vmx ÷ LiteLLM throughput (whole, 16 conns)", _ratio(vmx16, get("litellm", "whole", "throughput", "16", "rps")),
        15, "{:.1f}x", lower_is_better=False)
    for c, k in (("whole", "added_total_p50_ms"), ("stream", "added_ttfb_p50_ms")):
        v, f = get("vmx", c, "latency", k), get("floor", c, "latency", k)
        add(f"vmx - floor added latency p50 ({'total' if c == 'whole' else 'TTFB'}, {c}), ms",
            v - f if v is not None and f is not None else None, 0.5, "{:+.2f} ms")
    add("vmx peak RSS per worker, MiB", get("vmx", "memory", "peak_rss_mib"), 150, "{:.0f} MiB")
    r0, r1 = get("vmx", "memory", "rss_after_warmup_mib"), get("vmx", "memory", "rss_end_mib")
    add(f"vmx RSS growth over {get('vmx', 'memory', 'requests_served') or 0:,} requests, MiB",
        r1 - r0 if r0 is not None and r1 is not None else None, 5, "{:+.1f} MiB")
    add("vmx cold start to first 200 on /healthz, s", get("vmx", "cold_start_s"), 1.5, "{:.2f} s")
    for c in ("whole", "stream"):
        add(f"vmx-redis-postgres CPU/request ÷ vmx ({c})",
            _ratio(get("vmx-redis-postgres", c, "cpu_ms_per_request"), get("vmx", c, "cpu_ms_per_request")),
            1.3, "{:.2f}x")
    return rows


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(raw: dict[str, Any], s: dict[str, Any]) -> str:
    m = raw["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores (shared with other work; load average at start "
        f"{' '.join(m['load_average'])}), Linux {m['kernel']}, Python {m['python']}, Node {m['node']}, {m['wrk']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"Plan: {raw['plan']}; open loop at {raw['rate']} req/s; upstream chunk delay {raw['chunk_delay_ms']} ms.",
        "",
        "| target | case | req/s @1 | req/s @16 | req/s @64 | p99 ms @16 | CPU ms/req | added p50 ms | added p99 ms | vmx self-reported ms | peak RSS MiB | cold start s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in raw["targets"]:
        per = s[name]
        for c in ("whole", "stream"):
            d = per[c]
            t = d["throughput"]
            lat = d["latency"]
            kind = "total" if c == "whole" else "ttfb"
            lines.append(
                f"| {name} | {c} | {_f(t.get('1', {}).get('rps'), '{:.0f}')} | {_f(t.get('16', {}).get('rps'), '{:.0f}')} "
                f"| {_f(t.get('64', {}).get('rps'), '{:.0f}')} | {_f(t.get('16', {}).get('p99_ms'))} "
                f"| {_f(d['cpu_ms_per_request'], '{:.3f}')} | {_f(lat['added_' + kind + '_p50_ms'])} "
                f"| {_f(lat['added_' + kind + '_p99_ms'])} | {_f(lat['self_reported_overhead_p50_ms'], '{:.3f}')} "
                f"| {_f(per['memory']['peak_rss_mib'], '{:.0f}') if c == 'whole' else ''} "
                f"| {_f(per['cold_start_s']) if c == 'whole' else ''} |"
            )
    lines += [
        "",
        "Added latency is the target's open-loop figure minus `direct`'s: total time for whole answers, time to the "
        "first SSE frame for streams. CPU is the target's process tree on its own core during the closed-loop runs.",
        "",
        "| issue target | measured | goal | met |",
        "|---|---|---|---|",
    ]
    for g in s["_targets"]:
        ok = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        lines.append(f"| {g['goal']} | {_f(g['value'], g['fmt'])} | {'≤' if 'RSS' in g['goal'] or '÷ floor' in g['goal'] or 'latency' in g['goal'] or 'cold' in g['goal'] or 'redis' in g['goal'] else '≥'} {g['limit']} | {ok} |")
    errors = sum(r["errors"] for r in raw["throughput"]) + sum(1 for x in raw["latency"] if x["status"] != 200)
    lines += ["", f"Errors over the whole run (non-2xx, socket errors, timeouts): {errors}.", ""]
    return "\n".join(lines)


def plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    names = [n for n in s if not n.startswith("_")]
    for ax, c in zip(axes, ("whole", "stream"), strict=True):
        for name in names:
            pts = sorted(s[name][c]["throughput"].items(), key=lambda kv: int(kv[0]))
            xs = [p["rps"] for _, p in pts]
            ys = [p["p99_ms"] for _, p in pts]
            line = ax.plot(xs, ys, marker="o", label=name)[0]
            for (conns, _), x, y in zip(pts, xs, ys, strict=True):
                ax.annotate(conns, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("throughput, requests/s (closed loop; labels: connections)")
        ax.set_title("non-streamed" if c == "whole" else "streamed, 20 chunks")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("p99 latency, ms")
    axes[1].legend(loc="upper left", fontsize=8)
    fig.suptitle("Throughput vs p99 latency per target, gateway pinned to one core")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
