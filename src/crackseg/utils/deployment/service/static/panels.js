// Incidents and silences panels of the status page (helpers el, api, badge, ago, duration,
// showError come from app.js, loaded after this file and called only once the page runs).
"use strict";

const Panels = (() => {
  const fmtWhen = (t) => new Date(t * 1000).toLocaleString([], { hour12: false });
  const words = (s) => String(s || "").replace(/_/g, " ");

  function lasted(i) {
    if (i.end === null || i.end === undefined) return el("span", { class: "badge badge-critical ongoing" }, "ongoing " + duration(i.duration_seconds));
    return duration(i.duration_seconds);
  }

  function incidentRow(i, withDeployment) {
    const held = (i.held_by || []).join("; ");
    const told = (i.notified || []).join(", ");
    return el("tr", {
      "data-incident": i.alert_type + "@" + i.start, "data-incident-deployment": i.deployment_id,
      "data-alert-type": i.alert_type, "data-ongoing": i.end === null ? "true" : "false",
    },
    el("td", { class: "muted", title: fmtWhen(i.start) }, fmtWhen(i.start)),
    withDeployment ? el("td", null, el("a", { href: deploymentHref(i.deployment_id), class: "dep-id" }, i.deployment_id)) : null,
    el("td", null, badge(i.severity), " ", el("span", { class: "incident-title" }, i.title),
      i.repeats ? el("span", { class: "muted" }, " · " + plural(i.repeats, "reminder")) : null),
    el("td", { class: "num" }, lasted(i)),
    el("td", { class: "opt held", title: held }, held || el("span", { class: "muted" }, "not held")),
    el("td", { class: "opt notified", title: told }, told || el("span", { class: "muted" }, "nobody")),
    el("td", { class: "opt", title: i.message || "" }, el("span", { class: "err-cell muted" }, i.message || "")));
  }

  function renderIncidents(body, incidents, withDeployment, empty) {
    const cols = withDeployment ? 7 : 6;
    if (!incidents.length) {
      body.replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: cols }, empty)));
      return;
    }
    body.replaceChildren(...incidents.map((i) => incidentRow(i, withDeployment)));
  }

  async function refreshIncidents() {
    const dep = $("incident-deployment").value;
    const span = Number($("incident-range").value);
    const since = Date.now() / 1000 - span;
    let path = "/incidents?limit=200&since=" + since.toFixed(0);
    if (dep) path += "&deployment_id=" + encodeURIComponent(dep);
    const got = await api(path);
    const open = got.incidents.filter((i) => i.end === null).length;
    $("incident-summary").textContent = "· " + plural(got.count, "incident") + (open ? " · " + open + " ongoing" : "");
    renderIncidents($("incident-rows"), got.incidents, true, "No incident in this time: all quiet");
  }

  async function refreshDeploymentIncidents(id) {
    const got = await api("/incidents?limit=50&deployment_id=" + encodeURIComponent(id));
    renderIncidents($("detail-incidents"), got.incidents, false, "No incident recorded for " + id);
  }

  function fillDeployments(ids) {
    const select = $("incident-deployment");
    const chosen = select.value;
    const known = [...select.options].slice(1).map((o) => o.value).join("\n");
    if (known !== ids.join("\n")) {
      select.replaceChildren(el("option", { value: "" }, "All deployments"), ...ids.map((id) => el("option", { value: id }, id)));
      select.value = ids.includes(chosen) ? chosen : "";
      $("deployment-ids").replaceChildren(...ids.map((id) => el("option", { value: id })));
    }
  }

  // Silences: a glob as the registry matches it (fnmatch: * and ?).
  function globMatch(pattern, value) {
    if (pattern === null || pattern === undefined) return true;
    const re = "^" + String(pattern).replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$";
    return new RegExp(re).test(value);
  }

  function silenceRow(s, alerts) {
    const held = alerts.filter((a) => globMatch(s.deployment_id, a.deployment_id) && globMatch(s.alert_type, a.alert_type));
    const now = Date.now() / 1000;
    const button = el("button", { class: "btn", type: "button", "data-silence-id": s.id }, "Expire");
    button.addEventListener("click", () => expireSilence(s.id, button));
    return el("tr", { "data-silence": s.id, "data-silence-deployment": s.deployment_id || "*", "data-holding": String(held.length) },
      el("td", null, el("span", { class: "dep-id" }, s.deployment_id || "every deployment"),
        el("span", { class: "dep-url" }, s.alert_type ? words(s.alert_type) : "every alert")),
      el("td", { title: fmtWhen(s.starts_at) + " → " + fmtWhen(s.ends_at) }, "until " + fmtWhen(s.ends_at),
        el("span", { class: "dep-url" }, duration(Math.max(0, s.ends_at - now)) + " left")),
      el("td", null, held.length
        ? held.map((a) => a.deployment_id + " · " + words(a.alert_type)).join(", ")
        : el("span", { class: "muted" }, "nothing firing now")),
      el("td", { class: "opt" }, s.comment || "", s.created_by ? el("span", { class: "dep-url" }, "by " + s.created_by) : null),
      el("td", { class: "num" }, button));
  }

  async function refreshSilences(alerts) {
    await refreshMaintenance();
    let got;
    try {
      got = await api("/silences");
    } catch (err) {
      if (err instanceof Unauthorised) throw err;
      $("silence-rows").replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: 5 }, "Silences are not enabled on this server")));
      $("silence-form").hidden = true;
      return;
    }
    $("silence-form").hidden = false;
    $("silence-summary").textContent = got.count ? "· " + got.count + " active" : "";
    if (!got.silences.length) {
      $("silence-rows").replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: 5 }, "No silence: every alert is notified")));
      return;
    }
    $("silence-rows").replaceChildren(...got.silences.map((s) => silenceRow(s, alerts)));
  }

  function when(w) {
    if (w.starts_at !== null && w.starts_at !== undefined) return fmtWhen(w.starts_at) + " → " + fmtWhen(w.ends_at);
    const days = (w.days || []).length === 7 ? "every day" : (w.days || []).join(", ");
    return days + " " + w.start + "–" + w.end + " " + w.timezone;
  }

  async function refreshMaintenance() {
    const got = await api("/maintenance");
    const open = got.windows.filter((w) => w.active).length;
    const count = got.count + (got.next_cursor ? "+" : "");  // one page: more windows follow
    $("maintenance-summary").textContent = got.count ? "· " + count + (open ? " · " + open + " open now" : "") : "";
    if (!got.windows.length) {
      $("maintenance-rows").replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: 4 }, "No maintenance window configured")));
      return;
    }
    $("maintenance-rows").replaceChildren(...got.windows.map((w) => el("tr", { "data-window": w.name, "data-active": String(w.active) },
      el("td", null, el("span", { class: "dep-id" }, w.name), w.active ? el("span", { class: "badge badge-degraded" }, "open") : null),
      el("td", null, w.deployments.length ? w.deployments.join(", ") : "every deployment"),
      el("td", null, when(w)),
      el("td", null, w.holding.length ? w.holding.join(", ") + (w.holding_count > w.holding.length ? " and " + (w.holding_count - w.holding.length) + " more" : "") : el("span", { class: "muted" }, w.active ? "nothing monitored matches" : "closed")))));
  }

  function writeError(err) {
    if (err instanceof Unauthorised) {
      $("silence-error").textContent = "This needs the API token: set it above.";
      showError(err);
      return;
    }
    $("silence-error").textContent = err.message;
  }

  async function expireSilence(id, button) {
    button.disabled = true;
    try {
      await api("/silences/" + encodeURIComponent(id), { method: "DELETE" });
      await refresh();
    } catch (err) {
      writeError(err);
      button.disabled = false;
    }
  }

  async function createSilence(ev) {
    ev.preventDefault();
    $("silence-error").textContent = "";
    const dep = $("silence-deployment").value.trim();
    const alert = $("silence-alert").value;
    if (!dep && !alert) {
      $("silence-error").textContent = "Name a deployment, an alert, or both.";
      return;
    }
    const body = {
      deployment_id: dep || null, alert_type: alert || null,
      duration_seconds: Number($("silence-duration").value),
      comment: $("silence-comment").value.trim(), created_by: "status page",
    };
    try {
      await api("/silences", { method: "POST", body: JSON.stringify(body) });
      $("silence-comment").value = "";
      await refresh();
    } catch (err) {
      writeError(err);
    }
  }

  function attach() {
    $("incident-deployment").addEventListener("change", () => refreshIncidents().catch(showError));
    $("incident-range").addEventListener("change", () => refreshIncidents().catch(showError));
    $("silence-form").addEventListener("submit", createSilence);
  }

  return { attach, fillDeployments, refreshIncidents, refreshDeploymentIncidents, refreshSilences };
})();
