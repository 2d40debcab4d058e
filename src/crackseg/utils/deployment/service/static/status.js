// The public status view: reads /status.json (public deployments only, allow-listed fields)
// and renders groups, statuses, uptime, heartbeat bars and incident titles. textContent only.
"use strict";

const REFRESH_MS = 30000;
const WORDS = {
  healthy: "All systems operational", degraded: "Some systems degraded",
  unhealthy: "Some systems are down", unknown: "No status to show yet",
};
const fmtWhen = (t) => new Date(t * 1000).toLocaleString([], { hour12: false, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const badge = (s) => el("span", { class: "badge badge-" + s }, s);

function lasted(i) {
  if (i.end === null) return "ongoing since " + fmtWhen(i.start);
  const s = i.end - i.start;
  const d = s < 60 ? Math.round(s) + " s" : s < 3600 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
  return fmtWhen(i.start) + " · lasted " + d;
}

function render(view) {
  $("overall").className = "card overall overall-" + view.overall;
  $("overall").dataset.overall = view.overall;
  $("overall-text").textContent = WORDS[view.overall] || WORDS.unknown;
  const sections = view.groups.map((g) => el("section", { class: "card public-group", "data-group": g.name || "" },
    el("div", { class: "card-head" }, el("h2", null, g.name || (view.groups.length > 1 ? "Other services" : "Services"))),
    el("ul", { class: "public-list" }, ...g.deployments.map((d) => {
      const bar = el("span", { class: "hb" });
      const li = el("li", { "data-deployment-id": d.id, "data-status": d.status },
        el("div", { class: "public-row" }, el("span", { class: "dep-id" }, d.id), badge(d.status)),
        bar,
        el("div", { class: "muted public-uptime" }, "Uptime " + fmtUptime(d.uptime_24h_percent) + " (24 h) · " + fmtUptime(d.uptime_7d_percent) + " (7 d)"));
      Heartbeat.render(bar, d.heartbeat, d.id);
      return li;
    }))));
  if (!sections.length) sections.push(el("section", { class: "card empty" }, "No service is published here yet."));
  $("groups").replaceChildren(...sections);
  // The view is bounded: say what it left out rather than let a list look complete.
  $("capped").hidden = !view.capped;
  $("capped").textContent = view.capped ? "Showing " + view.capped.replace(/^listing /, "") + "." : "";
  const list = $("public-incidents");
  list.replaceChildren(...(view.incidents.length
    ? view.incidents.map((i) => el("li", { "data-incident": i.deployment_id, "data-ongoing": String(i.end === null) },
      badge(i.severity), el("span", { class: "alert-title" }, i.deployment_id + " · " + i.title), el("span", { class: "alert-since" }, lasted(i))))
    : [el("li", { class: "empty" }, "No incident in the last 7 days")]));
}

async function refresh() {
  try {
    const resp = await fetch("/status.json", { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
    render(await resp.json());
    $("banner").hidden = true;
    $("updated").textContent = "updated " + new Date().toLocaleTimeString([], { hour12: false });
    document.body.dataset.loaded = "true";
  } catch (err) {
    $("banner").textContent = "Cannot load the status: " + err.message + " (retrying)";
    $("banner").hidden = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  Heartbeat.attach(document);
  refresh().then(() => setInterval(refresh, REFRESH_MS));
});
