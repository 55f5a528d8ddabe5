// The vmx usage dashboard: plain JS and SVG over POST /v1/request-usage/{ws}/{env}.
// No framework, no CDN, no bundle: the page must work wherever the gateway runs, offline too.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN = "vmx.adminToken";
  const TENANT = "vmx.tenant";
  // range -> [milliseconds, bucket granularity]: at most a few hundred points per chart.
  const RANGES = { "1h": [3600e3, "minute"], "24h": [86400e3, "hour"], "7d": [7 * 86400e3, "hour"], "30d": [30 * 86400e3, "day"] };
  const DIMENSIONS = ["resource", "connection", "model"];
  const SVG = "http://www.w3.org/2000/svg";

  // Each load() replaces this promise; it resolves once the page shows that load's result,
  // so a driver (a person's eyes, or a test) knows when the charts are final.
  let settle = () => {};
  const newRender = () => { window.vmxRendered = new Promise((resolve) => { settle = resolve; }); };
  newRender();

  const setState = (state, message) => {
    document.body.dataset.state = state;
    $("status").textContent = message;
  };

  async function usage(ws, env, body) {
    const headers = { "content-type": "application/json" };
    const token = sessionStorage.getItem(TOKEN);
    if (token) headers.authorization = "Bearer " + token;
    const url = `/v1/request-usage/${encodeURIComponent(ws)}/${encodeURIComponent(env)}`;
    const resp = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const err = new Error((data.error && data.error.message) || `HTTP ${resp.status}`);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  // -- formatting ---------------------------------------------------------------------------
  const int = (n) => Math.round(n).toLocaleString("en-US");
  const usd = (n) => (n < 1 ? n.toFixed(6) : n.toFixed(2));
  const ms = (n) => (n == null ? "–" : n < 10 ? n.toFixed(2) : int(n));
  const pct = (n) => (n == null ? "–" : n.toFixed(n < 10 ? 2 : 1) + "%");
  const compact = (n) => (n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(0) + "k" : n >= 100 ? int(n) : +n.toPrecision(3) + "");
  const label = (iso, granularity) => (granularity === "day" ? iso.slice(5, 10) : iso.slice(11, 16));

  // -- charts -------------------------------------------------------------------------------
  const W = 640, H = 180, L = 52, R = 8, T = 10, B = 22;

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text != null) node.textContent = text;
    return node;
  }

  // series: [{name, values: [number|null]}]; bars draws the first series as columns.
  function chart(svg, buckets, series, { bars = false, granularity = "hour" } = {}) {
    svg.replaceChildren();
    const n = buckets.length;
    const all = series.flatMap((s) => s.values).filter((v) => v != null);
    const max = Math.max(0, ...all) || 1;
    const plotW = W - L - R, plotH = H - T - B;
    const x = (i) => L + (i + 0.5) * (plotW / n);
    const y = (v) => T + plotH - (v / max) * plotH;
    for (const frac of [0, 0.5, 1]) {
      const yy = y(max * frac);
      svg.append(el("line", { class: "grid", x1: L, x2: W - R, y1: yy, y2: yy }));
      svg.append(el("text", { class: "axis", x: L - 4, y: yy + 3, "text-anchor": "end" }, compact(max * frac)));
    }
    for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
      if (n) svg.append(el("text", { class: "axis", x: x(i), y: H - 6, "text-anchor": "middle" }, label(buckets[i], granularity)));
    }
    series.forEach((s, k) => {
      let d = "";
      if (bars && k === 0) {
        const w = Math.max(1, (plotW / n) * 0.7);
        s.values.forEach((v, i) => {
          if (v) d += `M${(x(i) - w / 2).toFixed(1)} ${y(0).toFixed(1)}V${y(v).toFixed(1)}h${w.toFixed(1)}V${y(0).toFixed(1)}Z`;
        });
        if (d) svg.append(el("path", { class: "bar", d, "data-series": s.name }));
        return;
      }
      let pen = "M";
      s.values.forEach((v, i) => {
        if (v == null) { pen = "M"; return; } // an empty bucket has no percentile: leave a gap
        d += `${pen}${x(i).toFixed(1)} ${y(v).toFixed(1)}`;
        pen = "L";
      });
      if (d) svg.append(el("path", { class: `series s${k}`, d, "data-series": s.name }));
    });
    if (series.length > 1) {
      series.forEach((s, k) => {
        const lx = L + 8 + k * 60;
        svg.append(el("line", { class: `series s${k}`, x1: lx, x2: lx + 14, y1: T + 4, y2: T + 4 }));
        svg.append(el("text", { class: "legend", x: lx + 18, y: T + 7 }, s.name));
      });
    }
    if (!all.length || all.every((v) => v === 0)) {
      svg.append(el("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" }, "no requests in this range"));
    }
    svg.dataset.points = String(n);
    svg.dataset.total = String(series[0].values.reduce((a, v) => a + (v || 0), 0));
  }

  // -- breakdowns ---------------------------------------------------------------------------
  function fold(points, dim) {
    const by = new Map();
    for (const p of points) {
      const key = p[dim] == null ? "(none)" : String(p[dim]);
      const r = by.get(key) || { key, requests: 0, errors: 0, tokens: 0, cost: 0, msSum: 0 };
      r.requests += p.requests || 0;
      r.errors += p.errors || 0;
      r.tokens += p.total_tokens || 0;
      r.cost += p.cost || 0;
      r.msSum += (p.duration_ms || 0) * (p.requests || 0); // avg per bucket, weighted back to a sum
      by.set(key, r);
    }
    return [...by.values()].filter((r) => r.requests > 0).sort((a, b) => b.requests - a.requests || (a.key < b.key ? -1 : 1));
  }

  function table(node, rows, dim) {
    const top = rows.length ? rows[0].requests : 1;
    node.replaceChildren();
    const head = node.createTHead().insertRow();
    for (const h of [dim, "requests", "tokens", "cost", "avg ms", "errors"]) head.append(Object.assign(document.createElement("th"), { textContent: h }));
    const body = node.createTBody();
    for (const r of rows) {
      const tr = body.insertRow();
      tr.dataset.key = r.key;
      tr.dataset.requests = String(r.requests);
      const name = tr.insertCell();
      const bar = Object.assign(document.createElement("span"), { className: "share" });
      bar.style.width = `${Math.max(2, Math.round((r.requests / top) * 60))}px`;
      name.append(bar, r.key);
      for (const text of [int(r.requests), int(r.tokens), usd(r.cost), ms(r.msSum / r.requests), pct((100 * r.errors) / r.requests)]) {
        tr.insertCell().textContent = text;
      }
    }
    if (!rows.length) body.insertRow().insertCell().textContent = "no requests";
  }

  function tile(id, value, text) {
    $(id).dataset.value = value == null ? "" : String(value);
    $(id).textContent = text;
  }

  // -- loading ------------------------------------------------------------------------------
  async function load() {
    newRender();
    const ws = $("workspace").value.trim(), env = $("environment").value.trim();
    if (!ws || !env) {
      setState("idle", "Enter a workspace and an environment.");
      settle({ state: "idle" });
      return;
    }
    sessionStorage.setItem(TENANT, JSON.stringify({ ws, env, range: $("range").value }));
    const [span, granularity] = RANGES[$("range").value];
    const end = new Date(), start = new Date(end.getTime() - span);
    const filter = { start: start.toISOString(), end: end.toISOString() };
    const q = (metrics, dimensions = []) => usage(ws, env, { granularity, metrics, dimensions, filter });
    setState("loading", `Loading ${ws}/${env}…`);
    try {
      const [main, p95, p99, ...bys] = await Promise.all([
        q({ requests: "sum", errors: "sum", total_tokens: "sum", cost: "sum", duration_ms: "p50", ttft_ms: "p50" }),
        q({ duration_ms: "p95", ttft_ms: "p95" }),
        q({ duration_ms: "p99" }),
        ...DIMENSIONS.map((d) => q({ requests: "sum", errors: "sum", total_tokens: "sum", cost: "sum", duration_ms: "avg" }, [d])),
      ]);
      const buckets = main.data.map((p) => p.bucket);
      const col = (data, key) => data.map((p) => p[key]);
      const requests = col(main.data, "requests");
      const errorRate = main.data.map((p) => (p.requests ? (100 * p.errors) / p.requests : null));
      const opts = { granularity };
      chart($("c-requests"), buckets, [{ name: "requests", values: requests }], { ...opts, bars: true });
      chart($("c-tokens"), buckets, [{ name: "tokens", values: col(main.data, "total_tokens") }], { ...opts, bars: true });
      chart($("c-cost"), buckets, [{ name: "cost", values: col(main.data, "cost") }], opts);
      chart($("c-errors"), buckets, [{ name: "error %", values: errorRate }], opts);
      chart($("c-latency"), buckets, [
        { name: "p50", values: col(main.data, "duration_ms") },
        { name: "p95", values: col(p95.data, "duration_ms") },
        { name: "p99", values: col(p99.data, "duration_ms") },
      ], opts);
      chart($("c-ttft"), buckets, [
        { name: "p50", values: col(main.data, "ttft_ms") },
        { name: "p95", values: col(p95.data, "ttft_ms") },
      ], opts);
      const folded = DIMENSIONS.map((d, i) => fold(bys[i].data, d));
      DIMENSIONS.forEach((d, i) => table($(`b-${d}`), folded[i], d));
      const sum = (key) => main.data.reduce((a, p) => a + (p[key] || 0), 0);
      const total = sum("requests");
      tile("t-requests", total, int(total));
      tile("t-tokens", sum("total_tokens"), int(sum("total_tokens")));
      tile("t-cost", sum("cost"), usd(sum("cost")));
      const rate = total ? (100 * sum("errors")) / total : null;
      tile("t-errors", rate, pct(rate));
      const avg = total ? folded[0].reduce((a, r) => a + r.msSum, 0) / total : null;
      tile("t-latency", avg, avg == null ? "–" : ms(avg) + " ms");
      setState("ready", `${ws}/${env}: ${int(total)} requests from ${filter.start.slice(0, 16)} to ${filter.end.slice(0, 16)} UTC, by ${granularity}.`);
      settle({ state: "ready" });
    } catch (err) {
      const hint = err.status === 401 ? " Enter the admin token (VMX_ADMIN_TOKEN)." : "";
      setState("error", `Could not load usage: ${err.message}.${hint}`);
      settle({ state: "error", status: err.status || 0 });
    }
  }

  // -- wiring -------------------------------------------------------------------------------
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("range").addEventListener("change", () => load());
  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    // Kept for this tab only: sessionStorage is gone when the tab closes.
    sessionStorage.setItem(TOKEN, $("token").value);
    $("token").value = "";
    $("token").placeholder = "token saved for this tab";
    load();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN);
    $("token").placeholder = "VMX_ADMIN_TOKEN";
  });

  const params = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem(TENANT) || "{}");
  $("workspace").value = params.get("workspace") || saved.ws || "";
  $("environment").value = params.get("environment") || saved.env || "";
  const range = params.get("range") || saved.range;
  if (range && RANGES[range]) $("range").value = range;
  if (sessionStorage.getItem(TOKEN)) $("token").placeholder = "token saved for this tab";
  load();
})();
