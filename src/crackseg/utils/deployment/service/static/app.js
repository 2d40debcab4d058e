// CrackSeg Monitor status page: reads /api/v1 every few seconds and renders it.
// Plain DOM (textContent only, never innerHTML with data) and small canvas charts.
"use strict";

const REFRESH_MS = 5000;
const HISTORY_POINTS = 120;
const TOKEN_KEY = "crackseg-monitor-token";
const ORDER = { unhealthy: 0, degraded: 1, unknown: 2, healthy: 3 };

const RANGE_NAMES = ["1h", "24h", "7d", "30d"];

// The address names the deployment and range shown: #/deployments/{id}?range=7d (an older
// #{id} still works), so a view can be bookmarked and shared.
// A hand-typed "#50%" is not valid percent-encoding: select nothing rather than stop the page.
function decodeId(text) {
  try { return decodeURIComponent(text) || null; } catch (e) { return null; }
}

function parseHash() {
  const h = location.hash.slice(1);
  if (!h) return { id: null, range: "24h" };
  const roll = /^\/rollouts\/(.+)$/.exec(h);
  if (roll) return { id: null, range: "24h", rollout: decodeId(roll[1]) };
  const m = /^\/deployments\/([^?]*)(?:\?(.*))?$/.exec(h);
  if (!m) return { id: decodeId(h), range: "24h" };
  const range = new URLSearchParams(m[2] || "").get("range");
  return { id: decodeId(m[1]), range: RANGE_NAMES.includes(range) ? range : "24h" };
}

const deploymentHref = (id, range) => "#/deployments/" + encodeURIComponent(id) + (range && range !== "24h" ? "?range=" + range : "");

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  selected: parseHash().id,
  range: parseHash().range,
  beats: {},
  chart: null,
  deployments: [],
  lastOk: null,
  timer: null,
};

class Unauthorised extends Error {}

async function api(path, init) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (init && init.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch("/api/v1" + path, { headers, cache: "no-store", ...(init || {}) });
  if (resp.status === 401) throw new Unauthorised("token required");
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    // Errors are RFC 9457 problem details: detail says what is wrong, field where.
    try {
      const p = await resp.json();
      if (p.detail) msg = (p.field ? p.field + ": " : "") + p.detail;
    } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return resp.json();
}

// Lists are pages: follow next_cursor (at most MAX_PAGES pages of 1000) and join them.
// `size` names the page-size parameter (the heartbeats' `limit` counts checks, so their
// page size is `deployments`); a page keyed by id (an object) is merged, a list appended.
const MAX_PAGES = 50;
async function apiAll(path, key, size = "limit") {
  const sep = path.includes("?") ? "&" : "?";
  const first = await api(path + sep + size + "=1000");
  let next = first.next_cursor;
  for (let i = 1; next && i < MAX_PAGES; i++) {
    const page = await api(path + sep + size + "=1000&cursor=" + encodeURIComponent(next));
    first[key] = Array.isArray(first[key]) ? first[key].concat(page[key]) : Object.assign(first[key], page[key]);
    next = page.next_cursor;
  }
  first.count = Array.isArray(first[key]) ? first[key].length : Object.keys(first[key]).length;
  first.next_cursor = next || null;
  return first;
}

// -- formatting -------------------------------------------------------------------------
const fmtMs = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(1) + " ms" : Math.round(v) + " ms");
const fmtPct = (v, d = 1) => (v === null || v === undefined ? "–" : v.toFixed(d) + " %");
// fmtUptime (dom.js): one format everywhere (both pages and the CLI).
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

// Named groups first (alphabetically), the ungrouped last; each with a heading row.
function grouped(rows) {
  const groups = new Map();
  for (const d of rows) {
    const g = d.group || "";
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(d);
  }
  const names = [...groups.keys()].sort((a, b) => (a === "") - (b === "") || a.localeCompare(b));
  return names.map((name) => [name, groups.get(name)]);
}

// Columns shown at this width (phones hide some): a heading spanning hidden ones would widen
// the fixed-layout table.
const visibleColumns = () => [...document.querySelectorAll("#deployments thead th")].filter((th) => th.offsetParent !== null).length || 10;

function groupRow(name, deps, showUngrouped) {
  if (!name && !showUngrouped) return null;
  const up = deps.filter((d) => d.health_status === "healthy").length;
  return el("tr", { class: "group-row", "data-group": name || "" },
    el("th", { colSpan: visibleColumns(), scope: "rowgroup" }, name || "Other deployments", el("span", { class: "muted" }, " · " + up + " of " + deps.length + " healthy")));
}

function renderTable(deps) {
  const q = $("filter").value.trim().toLowerCase();
  const rows = deps
    .filter((d) => !q || [d.deployment_id, d.health_check_url, d.health_status, d.group || ""].join(" ").toLowerCase().includes(q))
    .sort((a, b) => (ORDER[a.health_status] ?? 9) - (ORDER[b.health_status] ?? 9) || a.deployment_id.localeCompare(b.deployment_id));
  const body = $("deployment-rows");
  if (!rows.length) {
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: 10 }, deps.length ? "No deployment matches the filter" : "No deployments monitored yet")));
    return;
  }
  // The refresh replaces every row: keep the focused heartbeat bar and its tick.
  const focused = document.activeElement && document.activeElement.classList.contains("hb") ? document.activeElement : null;
  const keep = focused ? { id: focused.dataset.deploymentId, time: (focused.querySelector(".tick.active") || { dataset: {} }).dataset.time } : null;
  const groups = grouped(rows);
  const anyGroup = groups.some(([name]) => name);
  const out = [];
  for (const [name, members] of groups) {
    const head = groupRow(name, members, anyGroup);
    if (head) out.push(head);
    out.push(...members.map(deploymentRow));
  }
  body.replaceChildren(...out);
  for (const bar of body.querySelectorAll(".hb")) {
    Heartbeat.render(bar, state.beats[bar.dataset.deploymentId], bar.dataset.deploymentId);
    if (keep && bar.dataset.deploymentId === keep.id) {
      bar.focus({ preventScroll: true });
      Heartbeat.activate(bar, keep.time);
    }
  }
}

function deploymentRow(d) {
  const res = d.resource_metrics || {};
  const alerts = (d.active_alerts || []).length;
  const tr = el("tr", { class: "row" + (d.deployment_id === state.selected ? " selected" : ""), "data-deployment-id": d.deployment_id, "data-status": d.health_status },
    el("td", null, badge(d.health_status)),
    el("td", { class: "dep-cell" }, el("a", { class: "dep-id", href: deploymentHref(d.deployment_id, state.range), title: d.version ? "reports version " + d.version : "" }, d.deployment_id),
      el("span", { class: "dep-url", title: d.health_check_url }, d.health_check_url),
      el("span", { class: "hb", "data-deployment-id": d.deployment_id }),
      d.last_error && d.health_status !== "healthy" ? el("span", { class: "err", title: d.last_error }, d.last_error) : null),
    el("td", { class: "num" }, fmtMs(d.response_time_ms)),
    uptimeCell(d.uptime_24h_percent),
    uptimeCell(d.uptime_7d_percent, "opt"),
    el("td", { class: "num opt", title: "degraded (answering, counted up): " + fmtPct(d.degraded_percent) }, fmtPct(d.error_rate_percent)),
    processCell(d, res, fmtPct(res.cpu_usage_percent)),
    processCell(d, res, fmtMb(res.memory_usage_mb)),
    el("td", { class: "num opt" }, alerts ? el("span", { class: "badge badge-critical" }, alerts) : el("span", { class: "muted" }, "0")),
    el("td", { class: "muted opt", title: d.last_check ? new Date(d.last_check * 1000).toLocaleString() : "" }, ago(d.last_check)));
  tr.addEventListener("click", (ev) => { if (!ev.target.closest(".hb, a")) select(d.deployment_id); });
  return tr;
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
      el("td", null, el("a", { class: "dep-id", href: "#/rollouts/" + encodeURIComponent(r.deployment_id) }, r.deployment_id), r.artifact_id ? el("span", { class: "dep-url" }, r.artifact_id) : null),
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
    ? "· " + [plural(handlers.length, "channel"), (totals.sent || 0) + " sent", deadCount ? plural(deadCount, "dead letter") : null, report.unrouted ? report.unrouted + " unrouted" : null].filter(Boolean).join(" · ")
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

function renderBadges(dep) {
  const box = $("detail-badges");
  if (!dep || !dep.public) {
    box.replaceChildren(el("span", { class: "muted", title: "Badges and the public view show deployments configured public: true" }, dep ? "not public: no badges" : ""));
    return;
  }
  const id = encodeURIComponent(dep.deployment_id);
  box.replaceChildren(...["health.svg", "uptime/7d.svg", "response-time.svg"].map((b) =>
    el("a", { href: "/badges/" + id + "/" + b, title: "Badge: /badges/" + dep.deployment_id + "/" + b }, el("img", { src: "/badges/" + id + "/" + b, alt: b.replace(".svg", "") + " badge", height: 20 }))));
}

async function renderRange(id) {
  for (const b of document.querySelectorAll(".range-btn")) b.setAttribute("aria-pressed", String(b.dataset.range === state.range));
  const data = await api("/deployments/" + encodeURIComponent(id) + "/range?range=" + state.range);
  if (state.selected !== id) return;
  const b = data.buckets;
  const checks = b.count.reduce((a, c) => a + c, 0);
  const up = b.up.reduce((a, v, i) => a + (v || 0) * b.count[i], 0) + b.degraded.reduce((a, v, i) => a + (v || 0) * b.count[i], 0);
  $("range-summary").textContent = checks ? plural(checks, "check") + " · " + fmtUptime((100 * up) / checks) + " up · " + Math.round(data.bucket_seconds / 60) + " min buckets" : "no checks in this range";
  $("range-summary").dataset.range = data.range;
  $("range-summary").dataset.buckets = String(b.t.length);
  state.chart.set(data);
}

async function renderDetail() {
  const id = state.selected;
  const dep = state.deployments.find((d) => d.deployment_id === id);
  $("detail-name").textContent = id ? "· " + id : "";
  $("detail-url").textContent = dep ? dep.health_check_url : "";
  $("detail").dataset.deploymentId = id || "";
  renderBadges(dep);
  if (!dep) {
    state.chart.set(null);
    for (const c of ["chart-cpu", "chart-memory"]) drawChart($(c), [], {});
    return;
  }
  const [hist] = await Promise.all([
    api("/deployments/" + encodeURIComponent(id) + "/history?limit=" + HISTORY_POINTS),
    renderRange(id),
    Panels.refreshDeploymentIncidents(id),
  ]);
  if (state.selected !== id) return;
  const res = hist.resources;
  const empty = dep.process_name ? "No data yet" : "No process_name: the machine's use is above";
  drawChart($("chart-cpu"), res.map((r) => ({ t: r.timestamp, v: r.cpu_usage_percent })), { color: "--warn", min: 10, empty });
  drawChart($("chart-memory"), res.map((r) => ({ t: r.timestamp, v: r.memory_usage_mb })), { color: "--ok", min: 10, empty });
}

function select(id, range) {
  state.selected = id;
  if (range) state.range = range;
  history.replaceState(null, "", deploymentHref(id, state.range));
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
    const [list, alerts, deploys, notes, beats] = await Promise.all([
      apiAll("/deployments", "deployments"), apiAll("/alerts", "alerts"), api("/rollouts?limit=15"), api("/notifications?limit=" + DEAD_SHOWN),
      apiAll("/heartbeats?limit=60", "heartbeats", "deployments"),
    ]);
    state.deployments = list.deployments;
    state.beats = beats.heartbeats;
    if (!state.selected || !list.deployments.some((d) => d.deployment_id === state.selected)) {
      const worst = [...list.deployments].sort((a, b) => (ORDER[a.health_status] ?? 9) - (ORDER[b.health_status] ?? 9))[0];
      state.selected = worst ? worst.deployment_id : null;
    }
    renderSummary(list.deployments, alerts.count);
    renderHost(list.host || null);
    renderTable(list.deployments);
    renderAlerts(alerts.alerts);
    renderDeploys(deploys.rollouts);
    renderNotifications(notes);
    Panels.fillDeployments(list.deployments.map((d) => d.deployment_id).sort());
    await Promise.all([Panels.refreshIncidents(), Panels.refreshSilences(alerts.alerts)]);
    $("engine").className = "pill " + (list.monitoring_active ? "pill-ok" : "pill-bad");
    $("engine").textContent = list.monitoring_active ? "monitoring" : "stopped";
    $("banner").hidden = true;
    $("token-form").hidden = true;
    state.lastOk = Date.now();
    // The benchmark's "time to first render" (ms since navigation): performance.getEntriesByName.
    if (!document.body.dataset.loaded) performance.mark("first-render");
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
  state.chart = RangeChart.bind($("chart-range"), $("range-readout"));
  Heartbeat.attach(document);
  Panels.attach();
  for (const b of document.querySelectorAll(".range-btn")) {
    b.addEventListener("click", () => { if (state.selected) select(state.selected, b.dataset.range); });
  }
  const route = () => {
    const h = parseHash();
    if (h.rollout) {
      Rollout.show(h.rollout).then(() => $("rollout").scrollIntoView()).catch(showError);
      return;
    }
    Rollout.stop();
    if (h.id) select(h.id, h.range);
  };
  window.addEventListener("hashchange", route);
  if (parseHash().rollout) route();
  window.addEventListener("resize", () => { renderTable(state.deployments); state.chart.redraw(); renderDetail().catch(() => {}); });
  refresh().then(schedule);
});
