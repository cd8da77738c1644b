// The venue dashboard (served at /dashboard): a venue's bookings, revenue and occupancy per
// month, kept live by the organisation's update stream, and a report request with its status
// and files. Plain browser JavaScript, no build step; Chart.js is vendored (see VENDORED.md).
//
// Configuration comes from the URL fragment (#org=..&venue=..&from=YYYY-MM&to=YYYY-MM&token=..),
// which browsers never send to a server, or from the form; it is kept in sessionStorage (this
// tab only). REST calls send the token in the Authorization header; the update stream carries
// it as ?access_token= because EventSource cannot set headers (see the README's risk note).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  cfg: null, months: {}, occupancy: null, currency: null, chart: null, source: null,
  report: null, occupancyTimer: null,
};

function readConfig() {
  const fromHash = new URLSearchParams(location.hash.slice(1));
  const saved = JSON.parse(sessionStorage.getItem("dashboard") || "{}");
  const cfg = {};
  for (const k of ["org", "venue", "from", "to", "token"]) {
    cfg[k] = fromHash.get(k) || saved[k] || "";
  }
  if (fromHash.has("token")) history.replaceState(null, "", location.pathname); // not in history
  return cfg;
}

function showError(text) {
  const el = $("error");
  el.textContent = text || "";
  el.hidden = !text;
}

async function api(path, options = {}) {
  const resp = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.cfg.token}`, ...(options.headers || {}) },
  });
  if (!resp.ok) {
    let reason = `${resp.status}`;
    try {
      const body = await resp.json();
      reason = `${resp.status} ${body.error.code}: ${body.error.reason}`;
    } catch (_) { /* not JSON */ }
    throw new Error(reason);
  }
  return resp;
}

function monthsBetween(from, to) {
  const out = [];
  let [y, m] = from.split("-").map(Number);
  const [y2, m2] = to.split("-").map(Number);
  while (y < y2 || (y === y2 && m <= m2)) {
    out.push(`${y}-${String(m).padStart(2, "0")}`);
    m += 1;
    if (m === 13) { m = 1; y += 1; }
  }
  return out;
}

function money(minor) {
  if (!state.currency) return "–";
  const fmt = new Intl.NumberFormat(undefined, { style: "currency", currency: state.currency });
  const digits = fmt.resolvedOptions().maximumFractionDigits;
  return fmt.format(minor / 10 ** digits);
}

function render() {
  const labels = Object.keys(state.months).sort();
  let bookings = 0, cancellations = 0, revenue = 0;
  for (const p of labels) {
    const row = state.months[p];
    bookings += row.bookings;
    cancellations += row.cancellations;
    for (const [cur, v] of Object.entries(row.revenue_minor || {})) {
      state.currency = state.currency || cur;
      if (cur === state.currency) revenue += v;
    }
  }
  $("bookings-total").textContent = String(bookings);
  $("cancellations-total").textContent = String(cancellations);
  const rev = $("revenue-total");
  rev.dataset.minor = String(revenue);
  rev.dataset.currency = state.currency || "";
  rev.textContent = money(revenue);
  const occ = $("occupancy");
  if (state.occupancy) {
    const { occupied, available, known } = state.occupancy;
    if (!known) { // no capacity registered: unknown, never shown as full
      occ.textContent = "n/a";
      occ.title = "capacity unknown: register it with `wedding-engine venue ORG VENUE --capacity N`";
    } else {
      occ.textContent = available ? `${(100 * occupied / available).toFixed(2)} %` : "–";
      occ.title = "";
    }
    occ.dataset.occupied = String(occupied);
    occ.dataset.available = String(available);
  }
  const bars = labels.map((p) => state.months[p].bookings - state.months[p].cancellations);
  const revenueLine = labels.map((p) => ((state.months[p].revenue_minor || {})[state.currency] || 0) / 100);
  if (!window.Chart) return;
  if (!state.chart) {
    state.chart = new window.Chart($("chart"), {
      data: {
        labels,
        datasets: [
          { type: "bar", label: "net bookings", data: bars, yAxisID: "y", backgroundColor: "#7aa6d8" },
          { type: "line", label: "revenue", data: revenueLine, yAxisID: "y1", borderColor: "#c0504d" },
        ],
      },
      options: {
        animation: false,
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "bookings" } },
          y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false },
                title: { display: true, text: "revenue" } },
        },
      },
    });
  } else {
    state.chart.data.labels = labels;
    state.chart.data.datasets[0].data = bars;
    state.chart.data.datasets[1].data = revenueLine;
    state.chart.update();
  }
}

async function loadFigures() {
  const { org, venue, from, to } = state.cfg;
  const q = new URLSearchParams({ grain: "month", from, to });
  const body = await (await api(`/orgs/${enc(org)}/venues/${enc(venue)}/metrics?${q}`)).json();
  state.months = {};
  for (const row of body.periods) state.months[row.period] = row;
  render();
  await loadOccupancy();
}

async function loadOccupancy() {
  const { org, venue, from, to } = state.cfg;
  const q = new URLSearchParams({ grain: "month", from, to });
  const body = await (await api(`/orgs/${enc(org)}/venues/${enc(venue)}/occupancy?${q}`)).json();
  let occupied = 0, available = 0;
  for (const p of body.periods) { occupied += p.occupied_slots || 0; available += p.available_slots || 0; }
  state.occupancy = { occupied, available, known: body.capacity_known };
  render();
}

function occupancySoon() { // occupancy is computed by the server: re-read it after updates
  clearTimeout(state.occupancyTimer);
  state.occupancyTimer = setTimeout(() => loadOccupancy().catch((e) => showError(e.message)), 300);
}

function setLive(text, stateName) {
  const el = $("live-status");
  el.textContent = text;
  el.dataset.state = stateName;
}

function connect() {
  if (state.source) state.source.close();
  const { org, venue, token } = state.cfg;
  const q = new URLSearchParams({ venue, access_token: token });
  const source = new EventSource(`/orgs/${enc(org)}/updates?${q}`);
  state.source = source;
  source.addEventListener("ready", () => setLive("live", "live"));
  // resumed from too far back: updates were skipped, so re-read the figures
  source.addEventListener("gap", () => loadFigures().catch((e) => showError(e.message)));
  source.addEventListener("metric_update", (e) => {
    const u = JSON.parse(e.data);
    if (u.key !== state.cfg.venue || u.window.grain !== "month") return;
    if (!(u.window.period in state.months)) return; // outside the shown range
    state.months[u.window.period] = { period: u.window.period, ...u.new };
    render();
    occupancySoon();
  });
  source.addEventListener("report_status", (e) => {
    const s = JSON.parse(e.data);
    if (state.report && s.report_id === state.report) showReport(s);
  });
  source.onerror = () => setLive("reconnecting…", "retrying"); // EventSource retries itself
}

function showReport(s) {
  $("report-status").textContent = s.status + (s.error ? ` (${s.error})` : "");
  $("report-status").dataset.status = s.status;
  const list = $("report-links");
  list.replaceChildren();
  if (s.status !== "completed") return;
  for (const a of s.artifacts || []) {
    const url = a.download_url || a.uri;
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = url;
    link.textContent = `${a.format} (${a.size_bytes} bytes)`;
    link.dataset.format = a.format;
    link.addEventListener("click", (ev) => { ev.preventDefault(); download(url, a.format); });
    li.append(link);
    list.append(li);
  }
}

async function download(url, format) { // the file route needs the Authorization header
  const blob = await (await api(url)).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${state.report}.${format}`;
  a.click();
  URL.revokeObjectURL(a.href);
}

async function requestReport(form) {
  const data = new FormData(form);
  const body = {
    report_type: data.get("report_type"),
    date_from: data.get("date_from"),
    date_to: data.get("date_to"),
    output_formats: data.getAll("formats"),
    data_filters: { venue_id: [state.cfg.venue] },
  };
  const resp = await api(`/orgs/${enc(state.cfg.org)}/reports`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const accepted = await resp.json();
  state.report = accepted.report_id;
  showReport({ status: accepted.status });
  // the stream brings the next statuses; read the current one in case one came first
  const now = await (await api(accepted.status_url)).json();
  if (state.report === now.report_id && $("report-status").dataset.status !== "completed") {
    showReport({ ...now, artifacts: now.artifacts });
  }
}

const enc = encodeURIComponent;

async function start() {
  showError("");
  sessionStorage.setItem("dashboard", JSON.stringify(state.cfg));
  const f = $("report-form");
  if (!f.date_from.value) f.date_from.value = `${state.cfg.from}-01`;
  if (!f.date_to.value) {
    const [y, m] = state.cfg.to.split("-").map(Number);
    f.date_to.value = new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10);
  }
  try {
    connect(); // first, so nothing published after the read below is missed
    await loadFigures();
  } catch (e) {
    showError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  state.cfg = readConfig();
  const form = $("config");
  for (const k of ["org", "venue", "from", "to", "token"]) form[k].value = state.cfg[k];
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    state.cfg = Object.fromEntries(new FormData(form).entries());
    state.months = {};
    start();
  });
  $("report-form").addEventListener("submit", (e) => {
    e.preventDefault();
    requestReport(e.target).catch((err) => showError(err.message));
  });
  if (state.cfg.org && state.cfg.venue && state.cfg.from && state.cfg.to && state.cfg.token) start();
});
