//! The status page (`GET /` on the admin listener): one HTML document with
//! its CSS, script and chart inline, so it works with no internet and no
//! CDN. It is rendered with the status it was asked at, then refreshes
//! itself from `/status.json` every 5 seconds.

use crate::status::Status;

/// The page, with `status` as its first data.
pub(crate) fn render(status: &Status) -> String {
    // `<` escaped as JSON allows, so no value can close the script element.
    let data = serde_json::to_string(status)
        .unwrap_or_else(|_| "null".to_owned())
        .replace('<', "\\u003c");
    PAGE.replace("/*STATUS*/null", &data)
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tokencache status</title>
<style>
:root { --fg:#1d2330; --muted:#5b6475; --bg:#f6f7f9; --card:#fff; --accent:#2563eb; --ok:#15803d; --bad:#b91c1c; --warn:#b45309; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif; color:var(--fg); background:var(--bg); }
header { padding:12px 16px; background:var(--fg); color:#fff; display:flex; justify-content:space-between; flex-wrap:wrap; gap:8px; }
header h1 { font-size:18px; margin:0; }
main { padding:12px; display:grid; gap:12px; grid-template-columns:repeat(auto-fit,minmax(300px,1fr)); }
section { background:var(--card); border-radius:8px; padding:12px 14px; box-shadow:0 1px 2px rgba(0,0,0,.08); }
section.wide { grid-column:1/-1; }
h2 { font-size:14px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); margin:0 0 8px; }
.big { display:flex; flex-wrap:wrap; gap:18px; }
.big div { min-width:120px; }
.big b { display:block; font-size:26px; }
.big span { color:var(--muted); font-size:13px; }
table { width:100%; border-collapse:collapse; font-size:14px; }
th,td { text-align:left; padding:4px 6px; border-bottom:1px solid #e5e7eb; }
.scroll { overflow-x:auto; }
.closed,.healthy { color:var(--ok); } .open,.degraded { color:var(--bad); } .half_open { color:var(--warn); }
svg { width:100%; height:140px; }
.legend { font-size:13px; color:var(--muted); }
.legend i { display:inline-block; width:12px; height:3px; vertical-align:middle; margin:0 4px 0 10px; }
</style>
</head>
<body>
<header><h1>tokencache</h1><span id="meta"></span></header>
<main>
<section class="wide">
<h2>Since start</h2>
<div class="big">
<div><b id="requests">–</b><span>token requests</span></div>
<div><b id="saved">–</b><span>upstream requests saved</span></div>
<div><b id="upstream">–</b><span>upstream requests</span></div>
<div><b id="hit-ratio">–</b><span>hit ratio</span></div>
<div id="cost-box" hidden><b id="saved-cost">–</b><span>saved at <span id="price"></span> per 1000</span></div>
</div>
</section>
<section class="wide">
<h2>Last minutes</h2>
<svg id="chart" viewBox="0 0 600 140" preserveAspectRatio="none" role="img" aria-label="requests per second and hit ratio"></svg>
<div class="legend"><i style="background:var(--accent)"></i>requests/s (max <span id="max-rate">0</span>)<i style="background:var(--ok)"></i>hit ratio</div>
</section>
<section class="wide">
<h2>Routes</h2>
<div class="scroll"><table><thead><tr><th>Route</th><th>Requests</th><th>Hit ratio</th><th>Upstream</th><th>Upstream/s</th><th>Budget group</th><th>Budget/s</th><th>Now/s</th><th>Throttles</th><th>Breaker</th><th>Last upstream error</th></tr></thead><tbody id="routes"></tbody></table></div>
</section>
<section class="wide">
<h2>Budget groups</h2>
<div class="scroll"><table><thead><tr><th>Group</th><th>Configured/s</th><th>Now/s</th><th>Learned limit/s</th><th>Burst</th><th>Kept</th><th>Replicas</th><th>Slots taken</th><th>Throttles</th></tr></thead><tbody id="groups"></tbody></table></div>
</section>
<section>
<h2>Cache</h2>
<table><tbody>
<tr><th>Entries</th><td id="entries"></td></tr>
<tr><th>Fresh / aging / expired</th><td id="freshness"></td></tr>
<tr><th>Memory</th><td id="bytes"></td></tr>
<tr><th>Next refreshes in</th><td id="refreshes"></td></tr>
</tbody></table>
</section>
<section>
<h2>Shared store</h2>
<div id="store">none (memory only)</div>
</section>
<section id="clients-box" hidden>
<h2>Busiest clients</h2>
<table><thead><tr><th>Client id</th><th>Requests</th><th>Hit ratio</th></tr></thead><tbody id="clients"></tbody></table>
</section>
</main>
<script id="initial" type="application/json">/*STATUS*/null</script>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const num = (n) => n == null ? "–" : n.toLocaleString("en");
const pct = (r) => r == null ? "–" : (r * 100).toFixed(1) + " %";
const rate = (r) => r == null ? "–" : r.toFixed(r < 10 ? 2 : 0);
function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}
function chart(points) {
  const svg = $("chart"), ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const max = Math.max(1, ...points.map((p) => p.requests_per_second));
  $("max-rate").textContent = rate(max);
  if (points.length < 2) return;
  const x = (i) => (i / (points.length - 1)) * 600;
  const line = (ys, color) => {
    const path = document.createElementNS(ns, "polyline");
    path.setAttribute("points", ys.map((y, i) => x(i).toFixed(1) + "," + (135 - y * 130).toFixed(1)).join(" "));
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", color);
    path.setAttribute("stroke-width", "2");
    path.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(path);
  };
  line(points.map((p) => p.requests_per_second / max), "#2563eb");
  line(points.map((p) => p.hit_ratio == null ? 0 : p.hit_ratio), "#15803d");
}
function render(s) {
  if (!s) return;
  $("meta").textContent = "v" + s.version + " · up " + num(s.uptime_seconds) + " s";
  $("requests").textContent = num(s.requests);
  $("saved").textContent = num(s.saved);
  $("upstream").textContent = num(s.upstream_requests);
  $("hit-ratio").textContent = pct(s.hit_ratio);
  $("cost-box").hidden = s.price_per_1000 == null;
  if (s.price_per_1000 != null) {
    $("saved-cost").textContent = s.saved_cost.toFixed(2);
    $("price").textContent = String(s.price_per_1000);
  }
  chart(s.history);
  const body = $("routes");
  body.replaceChildren();
  for (const r of s.routes) {
    const row = body.insertRow();
    cell(row, r.route);
    cell(row, num(r.requests));
    cell(row, pct(r.hit_ratio));
    cell(row, num(r.upstream_requests));
    cell(row, rate(r.upstream_per_second));
    cell(row, r.budget_group || "–");
    cell(row, rate(r.budget_per_second));
    cell(row, rate(r.current_per_second));
    cell(row, num(r.throttles));
    cell(row, r.breaker.replace("_", "-"), r.breaker);
    cell(row, r.last_upstream_error || "none");
  }
  const groups = $("groups");
  groups.replaceChildren();
  for (const g of s.budget_groups) {
    const row = groups.insertRow();
    cell(row, g.name);
    cell(row, g.configured_per_second == null ? "unlimited" : rate(g.configured_per_second));
    cell(row, rate(g.current_per_second));
    cell(row, rate(g.learned_per_second));
    cell(row, num(g.burst));
    cell(row, g.shared ? (g.fallback ? "fleet (store away: own share)" : "fleet") : "this replica", g.fallback ? "degraded" : "");
    cell(row, num(g.replicas));
    cell(row, num(g.slots));
    cell(row, num(g.throttles));
  }
  const c = s.cache;
  $("entries").textContent = num(c.entries);
  $("freshness").textContent = num(c.fresh) + " / " + num(c.aging) + " / " + num(c.expired);
  $("bytes").textContent = num(c.bytes) + " of " + num(c.max_bytes) + " bytes";
  $("refreshes").textContent = c.next_refreshes_in_seconds.length ? c.next_refreshes_in_seconds.map((t) => t + " s").join(", ") : "–";
  $("clients-box").hidden = !s.clients;
  const clients = $("clients");
  clients.replaceChildren();
  for (const client of s.clients || []) {
    const row = clients.insertRow();
    cell(row, client.client_id);
    cell(row, num(client.requests));
    cell(row, pct(client.hit_ratio));
  }
  const store = $("store");
  if (s.shared_store) {
    const st = s.shared_store;
    store.textContent = st.kind + ": " + (st.healthy ? "healthy" : "degraded" + (st.trouble ? " (" + st.trouble + ")" : ""))
      + " · " + (st.latency_ms == null ? "no operation yet" : st.latency_ms.toFixed(st.latency_ms < 10 ? 2 : 0) + " ms recent latency")
      + " · " + num(st.errors) + " errors of " + num(st.operations) + " operations";
    store.className = st.healthy ? "healthy" : "degraded";
  }
}
render(JSON.parse($("initial").textContent));
async function refresh() {
  try {
    const answer = await fetch("status.json", { cache: "no-store" });
    if (answer.ok) render(await answer.json());
  } catch (_) { /* the next tick tries again */ }
}
setInterval(refresh, 5000);
</script>
</body>
</html>
"##;
