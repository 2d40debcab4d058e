// CrackSeg Monitor status page: reads /api/v1 every few seconds and renders it.
// Plain DOM (textContent only, never innerHTML with data) and small canvas charts.
"use strict";

const REFRESH_MS = 5000;
const HISTORY_POINTS = 120;
const TOKEN_KEY = "crackseg-monitor-token";
const ORDER = { unhealthy: 0, degraded: 1, unknown: 2, healthy: 3 };

// A hand-typed "#50%" is not valid percent-encoding: select nothing rather than stop the page.
function hashId() {
  try { return decodeURIComponent(location.hash.slice(1)) || null; } catch (e) { return null; }
}

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  selected: hashId(),
  deployments: [],
  lastOk: null,
  timer: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class Unauthorised extends Error {}

async function api(path, init) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (init && init.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch("/api/v1" + path, { headers, cache: "no-store", ...(init || {}) });
  if (resp.status === 401) throw new Unauthorised("token required");
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return resp.json();
}

// -- formatting -------------------------------------------------------------------------
const fmtMs = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(1) + " ms" : Math.round(v) + " ms");
const fmtPct = (v, d = 1) => (v === null || v === undefined ? "–" : v.toFixed(d) + " %");
// Uptime has one format everywhere (page and CLI): one decimal, rounded down, so 99.96 %
// never reads as 100.0 %.
const fmtUptime = (v) => (v === null || v === undefined ? "–" : (Math.floor(v * 10 + 1e-9) / 10).toFixed(1) + " %");
const fmtMbps = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) + " Mbps" : v.toFixed(0) + " Mbps");
const fmtMb = (v) => (v === null || v === undefined ? "–" : v >= 1024 ? (v / 1024).toFixed(2) + " GB" : v.toFixed(0) + " MB");

function ago(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 2) return "just now";
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

const badge = (status) => el("span", { class: "badge badge-" + String(status || "unknown") }, String(status || "unknown").replace(/_/g, " "));

function uptimeCell(pct, extra) {
  if (pct === null || pct === undefined) return el("td", { class: "num muted" + (extra ? " " + extra : "") }, "–");
  const bar = el("span", { class: "bar" + (pct < 95 ? " bad" : pct < 99.5 ? " warn" : "") }, el("span", { style: "" }));
  bar.firstChild.style.width = Math.max(2, pct) + "%";
  return el("td", { class: "num" + (extra ? " " + extra : "") }, el("span", { class: "uptime" }, bar, fmtUptime(pct)));
}

function renderHost(host) {
  $("host").dataset.host = host ? "true" : "false";
  $("host-cpu").textContent = host ? fmtPct(host.cpu_usage_percent) : "–";
  $("host-memory").textContent = host ? fmtMb(host.memory_usage_mb) : "–";
  $("host-disk").textContent = host ? fmtPct(host.disk_usage_percent) : "–";
  $("host-network").textContent = host ? fmtMbps(host.network_io_mbps) : "–";
  $("host-updated").textContent = host ? "sampled " + ago(host.timestamp) : "no sample yet";
}

// A deployment's CPU and memory are its process's; without a process_name they stay empty.
function processCell(d, res, text) {
  if (!d.process_name) return el("td", { class: "num muted opt", title: "No process_name: the machine's use is in the panel above" }, "–");
  if (d.process_running === false) return el("td", { class: "num opt bad-text", title: "No process matches " + d.process_name }, "not running");
  const pids = (res.pids || []).join(", ");
  return el("td", { class: "num opt", title: d.process_name + (pids ? " · pids " + pids : "") }, text);
}

// -- rendering --------------------------------------------------------------------------
function renderSummary(deps, alertCount) {
  const count = (s) => deps.filter((d) => d.health_status === s).length;
  $("stat-total").textContent = deps.length;
  $("stat-healthy").textContent = count("healthy");
  $("stat-degraded").textContent = count("degraded");
  $("stat-unhealthy").textContent = count("unhealthy");
  $("stat-alerts").textContent = alertCount;
  const rts = deps.map((d) => d.response_time_ms).filter((v) => typeof v === "number").sort((a, b) => a - b);
  $("stat-latency").textContent = rts.length ? fmtMs(rts[Math.floor((rts.length - 1) / 2)]) : "–";
}

function renderTable(deps) {
  const q = $("filter").value.trim().toLowerCase();
  const rows = deps
    .filter((d) => !q || [d.deployment_id, d.health_check_url, d.health_status].join(" ").toLowerCase().includes(q))
    .sort((a, b) => (ORDER[a.health_status] ?? 9) - (ORDER[b.health_status] ?? 9) || a.deployment_id.localeCompare(b.deployment_id));
  const body = $("deployment-rows");
  if (!rows.length) {
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: 10 }, deps.length ? "No deployment matches the filter" : "No deployments monitored yet")));
    return;
  }
  body.replaceChildren(...rows.map((d) => {
    const res = d.resource_metrics || {};
    const alerts = (d.active_alerts || []).length;
    const tr = el("tr", { class: "row" + (d.deployment_id === state.selected ? " selected" : ""), "data-deployment-id": d.deployment_id, "data-status": d.health_status },
      el("td", null, badge(d.health_status)),
      el("td", null, el("span", { class: "dep-id", title: d.version ? "reports version " + d.version : "" }, d.deployment_id), el("span", { class: "dep-url", title: d.health_check_url }, d.health_check_url),
        d.last_error && d.health_status !== "healthy" ? el("span", { class: "err", title: d.last_error }, d.last_error) : null),
      el("td", { class: "num" }, fmtMs(d.response_time_ms)),
      uptimeCell(d.uptime_24h_percent),
      uptimeCell(d.uptime_7d_percent, "opt"),
      el("td", { class: "num opt", title: "degraded (answering, counted up): " + fmtPct(d.degraded_percent) }, fmtPct(d.error_rate_percent)),
      processCell(d, res, fmtPct(res.cpu_usage_percent)),
      processCell(d, res, fmtMb(res.memory_usage_mb)),
      el("td", { class: "num opt" }, alerts ? el("span", { class: "badge badge-critical" }, alerts) : el("span", { class: "muted" }, "0")),
      el("td", { class: "muted opt", title: d.last_check ? new Date(d.last_check * 1000).toLocaleString() : "" }, ago(d.last_check)));
    tr.addEventListener("click", () => select(d.deployment_id));
    return tr;
  }));
}

function renderAlerts(alerts) {
  $("alert-count").textContent = alerts.length ? alerts.length + " firing" : "";
  const list = $("alerts");
  if (!alerts.length) {
    list.replaceChildren(el("li", { class: "empty" }, "All quiet: no alert is firing"));
    return;
  }
  list.replaceChildren(...alerts.map((a) => el("li", { "data-alert-type": a.alert_type, "data-deployment-id": a.deployment_id },
    badge(a.severity),
    el("span", { class: "alert-title" }, a.deployment_id + " · " + String(a.alert_type).replace(/_/g, " ")),
    el("span", { class: "alert-since" }, "since " + ago(a.started_at)),
    el("span", { class: "alert-msg" }, a.message || ""))));
}

function renderDeploys(records) {
  const body = $("deploy-rows");
  if (!records.length) {
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: 6 }, "No deployment recorded yet")));
    return;
  }
  body.replaceChildren(...records.slice(0, 15).map((r) => {
    const why = r.rollback_reason || (r.state === "failed" ? r.error_message : null);
    return el("tr", { "data-record-id": r.deployment_id, "data-state": r.state, "data-version": r.version || "" },
      el("td", null, el("span", { class: "dep-id" }, r.deployment_id), r.artifact_id ? el("span", { class: "dep-url" }, r.artifact_id) : null),
      el("td", { class: "mono" }, r.version || "–"),
      el("td", null, String(r.strategy || "–").replace(/_/g, " ")),
      el("td", null, badge(r.state), why ? el("span", { class: "err reason", title: why }, why) : null),
      el("td", { class: "muted opt" }, ago(r.start_time)),
      el("td", { class: "num opt" }, duration(r.end_time ? r.end_time - r.start_time : null)));
  }));
}

const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");
const DEAD_SHOWN = 20;
// Every delivery failure is a NotifierError; the page shows what went wrong, not the class.
const errText = (e) => String(e || "").replace(/^NotifierError: /, "");

// One row per alert channel: a dead letter is an alert that reached nobody, so it is red.
function channelState(h) {
  if (h.dead_letters > 0) return el("span", { class: "badge badge-unhealthy" }, "failing");
  if (h.queued > 0) return el("span", { class: "badge badge-degraded" }, "sending");
  return el("span", { class: "badge badge-healthy" }, "ok");
}

function countCell(v, alarm) {
  return el("td", { class: "num" + (alarm && v > 0 ? " alarm" : "") }, v ?? "–");
}

function renderNotifications(report) {
  const handlers = report.handlers || [];
  const totals = report.totals || {};
  const deadCount = report.dead_letter_count || 0;
  $("notify-summary").textContent = handlers.length
    ? "· " + [plural(handlers.length, "channel"), (totals.sent || 0) + " sent", deadCount ? plural(deadCount, "dead letter") : null].filter(Boolean).join(" · ")
    : "";
  $("retry-button").hidden = !deadCount;
  const body = $("channel-rows");
  if (!handlers.length) {
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: 9 }, "No alert channel configured: alerts are recorded but sent nowhere")));
  } else {
    body.replaceChildren(...handlers.map((h) => el("tr", { "data-channel-key": h.key, "data-dead-letters": String(h.dead_letters) },
      el("td", null, channelState(h)),
      el("td", null, el("span", { class: "dep-id" }, h.name), el("span", { class: "dep-url" }, [h.kind, h.key].filter(Boolean).join(" · "))),
      countCell(h.sent),
      countCell(h.failed),
      countCell(h.retried),
      countCell(h.dead_lettered, h.dead_letters > 0),
      countCell(h.dropped, true),
      countCell(h.queued),
      h.last_error
        ? el("td", { title: h.last_error }, el("span", { class: "err-cell" }, errText(h.last_error)), el("span", { class: "err-when" }, ago(h.last_error_at)))
        : el("td", { class: "muted" }, "none"))));
  }
  const dead = report.dead_letters || [];
  $("dead-letters").hidden = !dead.length;
  $("dead-count").textContent = deadCount > DEAD_SHOWN ? "· newest " + DEAD_SHOWN + " of " + deadCount : "· " + deadCount;
  $("dead-rows").replaceChildren(...dead.slice(0, DEAD_SHOWN).map((d) => el("tr", { "data-dead-letter": d.event_id || "", "data-handler-key": d.handler_key },
    el("td", { class: "muted", title: d.dead_at ? new Date(d.dead_at * 1000).toLocaleString() : "" }, ago(d.dead_at)),
    el("td", null, el("span", { class: "dep-id" }, d.handler || d.handler_key), el("span", { class: "dep-url" }, d.handler_key)),
    el("td", null, d.deployment_id),
    el("td", null, String(d.alert_type).replace(/_/g, " "), el("span", { class: "dep-url" }, d.state || "")),
    el("td", { class: "num" }, d.attempts),
    el("td", { title: d.last_error || "" }, el("span", { class: "err-cell" }, errText(d.last_error) || "–")))));
}

async function retryDeadLetters() {
  const button = $("retry-button");
  button.disabled = true;
  try {
    const res = await api("/notifications/retry", { method: "POST", body: "{}" });
    await refresh();
    $("notify-summary").textContent += " · " + plural(res.requeued, "notification") + " queued again";
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

// -- charts -----------------------------------------------------------------------------
function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// A step of 1, 2 or 5 times a power of ten, so the four grid lines get round labels.
function niceStep(v) {
  if (!(v > 0)) return 0.25;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function tickLabel(v) {
  return v >= 1000 ? (v / 1000).toFixed(v % 1000 ? 1 : 0) + "k" : String(Number(v.toPrecision(3)));
}

function drawChart(canvas, points, opts) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300;
  const h = canvas.clientHeight || 180;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const muted = cssVar("--muted");
  const line = cssVar("--line");
  ctx.font = "11px system-ui, sans-serif";
  if (!points.length) {
    ctx.fillStyle = muted;
    ctx.textAlign = "center";
    ctx.fillText(opts.empty || "No data yet", w / 2, h / 2);
    return;
  }
  const pad = { l: 44, r: 12, t: 12, b: 22 };
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const vmax = 4 * niceStep((Math.max(opts.min || 0, ...points.map((p) => p.v)) * 1.05) / 4);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
  const y = (v) => pad.t + (1 - v / vmax) * (h - pad.t - pad.b);

  ctx.strokeStyle = line;
  ctx.fillStyle = muted;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    ctx.fillText(tickLabel(v), pad.l - 6, yy);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of [t0, (t0 + t1) / 2, t1]) {
    const label = new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    ctx.fillText(label, Math.min(Math.max(x(t), pad.l + 24), w - pad.r - 24), h - pad.b + 6);
  }

  const color = cssVar(opts.color);
  const grad = ctx.createLinearGradient(0, pad.t, 0, h - pad.b);
  grad.addColorStop(0, color + "55");
  grad.addColorStop(1, color + "00");
  ctx.beginPath();
  points.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
  ctx.lineTo(x(points[points.length - 1].t), y(0));
  ctx.lineTo(x(points[0].t), y(0));
  ctx.closePath();
  ctx.fillStyle = grad;
  ctx.fill();
  ctx.beginPath();
  points.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.lineJoin = "round";
  ctx.stroke();
  // Failed checks as red dots, so an outage stands out even when it was fast.
  ctx.fillStyle = cssVar("--bad");
  for (const p of points) {
    if (p.bad) { ctx.beginPath(); ctx.arc(x(p.t), y(p.v), 3, 0, 2 * Math.PI); ctx.fill(); }
  }
}

async function renderDetail() {
  const id = state.selected;
  const dep = state.deployments.find((d) => d.deployment_id === id);
  $("detail-name").textContent = id ? "· " + id : "";
  $("detail-url").textContent = dep ? dep.health_check_url : "";
  if (!dep) {
    for (const c of ["chart-response", "chart-cpu", "chart-memory"]) drawChart($(c), [], {});
    return;
  }
  const hist = await api("/deployments/" + encodeURIComponent(id) + "/history?limit=" + HISTORY_POINTS);
  if (state.selected !== id) return;
  const health = hist.health.map((r) => ({ t: r.timestamp, v: r.response_time_ms, bad: r.status === "unhealthy" }));
  const res = hist.resources;
  drawChart($("chart-response"), health, { color: "--accent", min: 1 });
  const empty = dep.process_name ? "No data yet" : "No process_name: the machine's use is above";
  drawChart($("chart-cpu"), res.map((r) => ({ t: r.timestamp, v: r.cpu_usage_percent })), { color: "--warn", min: 10, empty });
  drawChart($("chart-memory"), res.map((r) => ({ t: r.timestamp, v: r.memory_usage_mb })), { color: "--ok", min: 10, empty });
}

function select(id) {
  state.selected = id;
  history.replaceState(null, "", "#" + encodeURIComponent(id));
  for (const tr of document.querySelectorAll("#deployment-rows tr.row")) {
    tr.classList.toggle("selected", tr.dataset.deploymentId === id);
  }
  renderDetail().catch(showError);
}

// -- refresh loop -----------------------------------------------------------------------
function showError(err) {
  if (err instanceof Unauthorised) {
    $("token-form").hidden = false;
    $("token-button").hidden = false;
    $("banner").hidden = true;
    return;
  }
  $("banner").textContent = "Cannot reach the monitor: " + err.message + " (retrying)";
  $("banner").hidden = false;
  $("engine").className = "pill pill-unknown";
  $("engine").textContent = "offline";
}

async function refresh() {
  try {
    const [list, alerts, deploys, notes] = await Promise.all([
      api("/deployments"), api("/alerts"), api("/deploys?limit=15"), api("/notifications?limit=" + DEAD_SHOWN),
    ]);
    state.deployments = list.deployments;
    if (!state.selected || !list.deployments.some((d) => d.deployment_id === state.selected)) {
      const worst = [...list.deployments].sort((a, b) => (ORDER[a.health_status] ?? 9) - (ORDER[b.health_status] ?? 9))[0];
      state.selected = worst ? worst.deployment_id : null;
    }
    renderSummary(list.deployments, alerts.count);
    renderHost(list.host || null);
    renderTable(list.deployments);
    renderAlerts(alerts.alerts);
    renderDeploys(deploys.deployments);
    renderNotifications(notes);
    $("engine").className = "pill " + (list.monitoring_active ? "pill-ok" : "pill-bad");
    $("engine").textContent = list.monitoring_active ? "monitoring" : "stopped";
    $("banner").hidden = true;
    $("token-form").hidden = true;
    state.lastOk = Date.now();
    document.body.dataset.loaded = "true";
    await renderDetail();
  } catch (err) {
    showError(err);
  }
  $("updated").textContent = state.lastOk ? "updated " + new Date(state.lastOk).toLocaleTimeString() : "not loaded yet";
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => { await refresh(); schedule(); }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("filter").addEventListener("input", () => renderTable(state.deployments));
  $("token-button").addEventListener("click", () => { $("token-form").hidden = false; $("token-input").focus(); });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token-input").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    refresh();
  });
  $("retry-button").addEventListener("click", retryDeadLetters);
  window.addEventListener("resize", () => renderDetail().catch(() => {}));
  refresh().then(schedule);
});
