// The dashboard: polls the admin API every few seconds and draws with uPlot (vendored, no network).
"use strict";

const REFRESH_MS = 5000;
const HISTORY_S = 15 * 60;
const tokenInput = document.getElementById("token");
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) localStorage.setItem("precog-admin-token", fromHash);
tokenInput.value = localStorage.getItem("precog-admin-token") || "";
tokenInput.addEventListener("change", () => {
  localStorage.setItem("precog-admin-token", tokenInput.value);
  refresh();
});

async function admin(path) {
  const headers = tokenInput.value ? { Authorization: "Bearer " + tokenInput.value } : {};
  const response = await fetch(path, { headers });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

const fmt = {
  pct: (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %"),
  ms: (x) => (x === null || x === undefined ? "–" : x.toFixed(1) + " ms"),
  int: (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en")),
  usd: (x) => "$" + Number(x || 0).toFixed(4),
};

function setText(id, text) { document.getElementById(id).textContent = text; }

let hitRateChart = null;
let latencyChart = null;

function drawHitRate(series) {
  const data = [series.map((b) => b.t), series.map((b) => b.hit_rate === null ? null : 100 * b.hit_rate),
                series.map((b) => b.requests)];
  if (hitRateChart) { hitRateChart.setData(data); return; }
  hitRateChart = new uPlot({
    width: 520, height: 220,
    series: [{}, { label: "hit rate %", stroke: "#1a7f37", width: 2, spanGaps: true },
             { label: "requests", stroke: "#8993a4", scale: "n" }],
    axes: [{}, { label: "%" }, { side: 1, scale: "n", grid: { show: false } }],
    scales: {
      x: { range: () => { const now = Date.now() / 1000; return [now - HISTORY_S, now]; } },
      y: { range: [0, 100] },
    },
  }, data, document.getElementById("chart-hit-rate"));
}

function drawLatency(latency) {
  const outcomes = Object.keys(latency);
  if (!outcomes.length) return;
  const edges = latency[outcomes[0]].edges_ms;
  const xs = edges.map((_, i) => i).concat([edges.length]);
  const colours = { hit: "#1a7f37", miss: "#bf3989", bypass: "#8993a4", error: "#b00020" };
  const data = [xs].concat(outcomes.map((o) => latency[o].counts));
  const label = (i) => (i === null || i === undefined ? "–"
    : i < edges.length ? "≤" + edges[i] : ">" + edges[edges.length - 1]);
  if (latencyChart && latencyChart.series.length === outcomes.length + 1) { latencyChart.setData(data); return; }
  if (latencyChart) latencyChart.destroy();
  latencyChart = new uPlot({
    width: 520, height: 220,
    series: [{ value: (u, v) => label(v) }].concat(outcomes.map((o) => ({
      label: o, stroke: colours[o] || "#333", fill: (colours[o] || "#333") + "33",
      paths: uPlot.paths.bars({ size: [0.8] }), points: { show: false },
    }))),
    axes: [{ values: (u, vals) => vals.map(label) }, { label: "requests" }],
    scales: { x: { time: false } },
  }, data, document.getElementById("chart-latency"));
}

function fillTable(id, entries) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...entries.map((e) => {
    const row = document.createElement("tr");
    for (const [text, cls] of [[fmt.int(e.hits)], [e.query], [e.answer.slice(0, 160)], [e.source], [e.id, "id"]]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (cls) cell.className = cls;
      row.appendChild(cell);
    }
    return row;
  }));
}

function fillFalseHits(rows) {
  const body = document.querySelector("#false-hits tbody");
  body.replaceChildren(...(rows || []).map((t) => {
    const row = document.createElement("tr");
    const verified = t.verified ? t.verified_false / t.verified : null;
    const ci = t.verified_interval ? fmt.pct(t.verified_interval[0]) + " – " + fmt.pct(t.verified_interval[1]) : "–";
    for (const text of [t.tenant, fmt.int(t.served), fmt.pct(t.max_false_hit_rate), fmt.pct(t.expected_false_hit_rate),
                        fmt.pct(verified), ci, fmt.int(t.verified + t.explored)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    return row;
  }));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const stats = await admin("/admin/stats");
    const five = stats.windows["5m"];
    setText("kpi-requests", fmt.int(five.requests));
    setText("kpi-hit-rate", fmt.pct(five.hit_rate));
    setText("kpi-hit-p50", fmt.ms(stats.latency_ms.hit ? stats.latency_ms.hit.p50_ms : null));
    setText("kpi-miss-p50", fmt.ms(stats.latency_ms.miss ? stats.latency_ms.miss.p50_ms : null));
    setText("kpi-tokens", fmt.int(stats.tokens_saved));
    setText("kpi-cost", fmt.usd(stats.cost_saved_usd));
    setText("kpi-entries", fmt.int(stats.store.entries));
    setText("kpi-breaker", stats.upstream.breaker);
    drawHitRate(stats.series);
    drawLatency(stats.latency_ms);
    fillFalseHits(stats.false_hits);
    const page = await admin("/admin/entries?limit=500");
    fillTable("top-entries", page.entries.sort((a, b) => b.hits - a.hits).slice(0, 10));
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.className = "status";
  } catch (err) {
    status.textContent = "error: " + err.message;
    status.className = "status error";
  }
}

document.getElementById("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = document.getElementById("search").value;
  const page = await admin("/admin/entries?limit=50&q=" + encodeURIComponent(q));
  fillTable("search-results", page.entries);
});

refresh();
setInterval(refresh, REFRESH_MS);
