// Heartbeat bars: a deployment's last checks as coloured ticks (healthy, degraded, unhealthy,
// none), shared by the private page and the public view. One tab stop per bar; the arrow keys
// move through its ticks; hover and keyboard focus show the check in one floating tip.
"use strict";

const Heartbeat = (() => {
  const TICK_PX = 8; // a 6 px tick and its 2 px gap (app.css .tick)
  const STATUSES = new Set(["healthy", "degraded", "unhealthy"]);
  let tip = null;

  function tipEl() {
    if (!tip) {
      tip = document.createElement("div");
      tip.id = "hb-tip";
      tip.className = "hb-tip";
      tip.setAttribute("role", "tooltip");
      tip.setAttribute("aria-live", "polite");
      tip.hidden = true;
      document.body.append(tip);
    }
    return tip;
  }

  const fmtTime = (t) => new Date(t * 1000).toLocaleString([], { hour12: false });
  const fmtMs = (v) => (typeof v === "number" ? (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms" : null);

  function describe(tick) {
    const d = tick.dataset;
    if (d.status === "none") return "no check";
    return [fmtTime(Number(d.time)), d.status, d.ms ? d.ms : null, d.error || null].filter(Boolean).join(" · ");
  }

  function show(tick) {
    const t = tipEl();
    t.textContent = describe(tick);
    t.hidden = false;
    const r = tick.getBoundingClientRect();
    const w = t.offsetWidth;
    t.style.left = Math.max(4, Math.min(window.innerWidth - w - 4, r.left + r.width / 2 - w / 2)) + window.scrollX + "px";
    t.style.top = r.top + window.scrollY - t.offsetHeight - 6 + "px";
    for (const a of tick.parentNode.querySelectorAll(".tick.active")) a.classList.remove("active");
    tick.classList.add("active");
  }

  function hide(bar) {
    if (tip) tip.hidden = true;
    for (const a of bar.querySelectorAll(".tick.active")) a.classList.remove("active");
  }

  // beat: {t: [...], s: [...], r?: [...], e?: [...]} oldest first. The bar shows the newest
  // that fit its width; missing places (a new deployment) are "none" ticks, so bars align.
  function render(bar, beat, label) {
    // Bars sit in table cells whose width follows their content: size them from the window.
    const room = Math.min(400, window.innerWidth < 600 ? window.innerWidth * 0.45 : window.innerWidth - 180);
    const n = Math.max(12, Math.min(Math.floor(room / TICK_PX), 50));
    const count = beat ? beat.t.length : 0;
    const first = Math.max(0, count - n);
    const ticks = [];
    for (let i = 0; i < n - (count - first); i++) {
      const s = document.createElement("span");
      s.className = "tick tick-none";
      s.dataset.status = "none";
      ticks.push(s);
    }
    for (let i = first; i < count; i++) {
      const status = STATUSES.has(beat.s[i]) ? beat.s[i] : "unknown";
      const s = document.createElement("span");
      s.className = "tick tick-" + status;
      s.dataset.status = status;
      s.dataset.time = String(beat.t[i]);
      const ms = beat.r ? fmtMs(beat.r[i]) : null;
      if (ms) s.dataset.ms = ms;
      if (beat.e && beat.e[i]) s.dataset.error = beat.e[i];
      ticks.push(s);
    }
    bar.replaceChildren(...ticks);
    bar.className = "hb";
    bar.tabIndex = 0;
    bar.setAttribute("role", "group");
    // Ticks are described when shown, not when drawn: 50,000 date formats at 1,000
    // deployments took seconds. The tip is the bar's description, read as it changes.
    bar.setAttribute("aria-label", (label ? label + ": " : "") + "last " + (count - first) + " checks; arrow keys step through them");
    bar.setAttribute("aria-describedby", "hb-tip");
    bar.dataset.ticks = String(ticks.length);
  }

  function ticksOf(bar) {
    return [...bar.querySelectorAll(".tick:not(.tick-none)")];
  }

  // One set of listeners for every bar of the document (bars are re-rendered every refresh).
  function attach(root) {
    root.addEventListener("mouseover", (ev) => {
      const tick = ev.target.closest && ev.target.closest(".hb .tick");
      if (tick) show(tick);
    });
    root.addEventListener("mouseout", (ev) => {
      const bar = ev.target.closest && ev.target.closest(".hb");
      if (bar && !bar.contains(ev.relatedTarget)) hide(bar);
    });
    root.addEventListener("focusin", (ev) => {
      if (!ev.target.classList || !ev.target.classList.contains("hb")) return;
      const ticks = ticksOf(ev.target);
      if (ticks.length) show(ticks[ticks.length - 1]);
    });
    root.addEventListener("focusout", (ev) => {
      if (ev.target.classList && ev.target.classList.contains("hb")) hide(ev.target);
    });
    root.addEventListener("keydown", (ev) => {
      const bar = ev.target;
      if (!bar.classList || !bar.classList.contains("hb")) return;
      const ticks = ticksOf(bar);
      if (!ticks.length) return;
      let i = ticks.findIndex((t) => t.classList.contains("active"));
      if (ev.key === "ArrowLeft") i = Math.max(0, i - 1);
      else if (ev.key === "ArrowRight") i = Math.min(ticks.length - 1, i + 1);
      else if (ev.key === "Home") i = 0;
      else if (ev.key === "End") i = ticks.length - 1;
      else if (ev.key === "Escape") { hide(bar); return; }
      else return;
      ev.preventDefault();
      show(ticks[i]);
    });
  }

  // After a re-render: show the tick of time ``time`` again (else the newest), so a keyboard
  // user keeps their place when the page refreshes under them.
  function activate(bar, time) {
    const ticks = ticksOf(bar);
    const tick = ticks.find((t) => t.dataset.time === time) || ticks[ticks.length - 1];
    if (tick) show(tick);
  }

  return { render, attach, describe, activate };
})();
