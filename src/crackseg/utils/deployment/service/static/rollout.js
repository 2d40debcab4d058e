// A rollout's page (#/rollouts/{id}): the new version's share of traffic over time with each
// gate's verdict on it, the judge's evidence per look (error rate of each arm, and the
// p-value against alpha when recorded), the steps, and the rollback reason in words.
// Reads /api/v1/rollouts/{id}; while the rollout runs (in this service), follows its event
// stream (/api/v1/rollouts/{id}/events, EventSource) and redraws on each event; if the stream
// cannot be opened (e.g. reads need the token, which EventSource cannot send), it polls.
// Helpers (el, api, badge, duration, $) come from app.js.
"use strict";

const Rollout = (() => {
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const VERDICT = { passed: "--ok", failed: "--bad", error: "--bad", inconclusive: "--warn" };

  function frame(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600;
    const h = canvas.clientHeight || 200;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    return { ctx, w, h, pad: { l: 44, r: 12, t: 14, b: 22 } };
  }

  function axes(f, t0, t1, ymax, label) {
    const { ctx, w, h, pad } = f;
    ctx.strokeStyle = css("--line");
    ctx.fillStyle = css("--muted");
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let k = 0; k <= 4; k++) {
      const v = (ymax * k) / 4;
      const y = Math.round(pad.t + (1 - k / 4) * (h - pad.t - pad.b)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
      ctx.fillText(label(v), pad.l - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of [t0, (t0 + t1) / 2, t1]) {
      const x = pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (w - pad.l - pad.r);
      ctx.fillText("+" + duration(t - t0), Math.min(Math.max(x, pad.l + 20), w - pad.r - 20), h - pad.b + 6);
    }
    return {
      x: (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (w - pad.l - pad.r),
      y: (v) => pad.t + (1 - v / ymax) * (h - pad.t - pad.b),
    };
  }

  function drawWeights(canvas, data) {
    const f = frame(canvas);
    const r = data.record;
    const t0 = r.start_time;
    const gates = data.steps.filter((s) => s.step === "gate" && s.at);
    const t1 = Math.max(r.end_time || 0, ...data.steps.map((s) => s.at || 0), t0 + 1);
    const { x, y } = axes(f, t0, t1, 100, (v) => v + "%");
    const { ctx } = f;
    if (data.weights.length) {
      ctx.strokeStyle = css("--accent");
      ctx.lineWidth = 2;
      ctx.beginPath();
      let last = 0;
      ctx.moveTo(x(t0), y(0));
      for (const p of data.weights) { ctx.lineTo(x(p.at), y(last)); ctx.lineTo(x(p.at), y(p.new_percent)); last = p.new_percent; }
      ctx.lineTo(x(t1), y(last));
      ctx.stroke();
    }
    for (const g of gates) {
      ctx.fillStyle = css(VERDICT[g.verdict] || "--unk");
      ctx.beginPath(); ctx.arc(x(g.at), f.pad.t + 4, 5, 0, 2 * Math.PI); ctx.fill();
    }
  }

  function drawLooks(canvas, data) {
    const f = frame(canvas);
    const looks = data.looks.filter((l) => l.at);
    if (!looks.length) {
      f.ctx.fillStyle = css("--muted");
      f.ctx.textAlign = "center";
      f.ctx.fillText("No judge evidence recorded for this rollout", f.w / 2, f.h / 2);
      return;
    }
    const rate = (arm) => (arm.requests ? (100 * (arm.errors || 0)) / arm.requests : null);
    const rates = looks.flatMap((l) => [rate(l.canary), rate(l.stable)]).filter((v) => v !== null);
    const ymax = Math.max(1, ...rates) * 1.1;
    const t0 = data.record.start_time;
    const t1 = Math.max(...looks.map((l) => l.at), t0 + 1);
    const { x, y } = axes(f, t0, t1, ymax, (v) => v.toFixed(v < 10 ? 1 : 0) + "%");
    const { ctx } = f;
    for (const [arm, color] of [["stable", "--ok"], ["canary", "--bad"]]) {
      ctx.strokeStyle = css(color);
      ctx.fillStyle = css(color);
      ctx.lineWidth = 2;
      ctx.beginPath();
      let started = false;
      for (const l of looks) {
        const v = rate(l[arm]);
        if (v === null) continue;
        if (started) ctx.lineTo(x(l.at), y(v)); else { ctx.moveTo(x(l.at), y(v)); started = true; }
      }
      ctx.stroke();
      for (const l of looks) {
        const v = rate(l[arm]);
        if (v !== null) { ctx.beginPath(); ctx.arc(x(l.at), y(v), 3, 0, 2 * Math.PI); ctx.fill(); }
      }
    }
  }

  function stepText(s) {
    if (s.step === "route") return (s.backends || []).join(", ");
    if (s.step === "gate") return (s.gate || "") + ": " + (s.reason || "");
    return [s.gate, s.reason, s.error].filter(Boolean).join(": ");
  }

  function render(data) {
    const r = data.record;
    $("rollout").hidden = false;
    $("rollout").dataset.recordId = r.deployment_id;
    $("rollout-name").textContent = "· " + r.deployment_id + (r.version ? " · " + r.version : "") + (r.strategy ? " · " + String(r.strategy).replace(/_/g, " ") : "");
    $("rollout-state").replaceChildren(badge(r.state));
    const why = r.rollback_reason || (r.state === "failed" ? r.error_message : null);
    $("rollout-reason").textContent = why ? "Rolled back because " + why : r.state === "success" ? "Promoted: every gate passed" : "";
    $("rollout-reason").className = "rollout-reason" + (why ? "" : " ok");
    $("rollout-reason").hidden = !$("rollout-reason").textContent;
    drawWeights($("chart-weights"), data);
    drawLooks($("chart-looks"), data);
    const t0 = r.start_time;
    $("rollout-steps").replaceChildren(...(data.steps.length ? data.steps.map((s) => el("tr", { "data-step": s.step || "", "data-verdict": s.verdict || "" },
      el("td", { class: "num muted" }, s.at ? "+" + duration(s.at - t0) : "–"),
      el("td", null, s.verdict ? badge(s.verdict) : String(s.step || "").replace(/_/g, " ")),
      el("td", { class: "reason" }, stepText(s)))) : [el("tr", { class: "empty" }, el("td", { colSpan: 3 }, "No step recorded"))]));
  }

  let following = null; // {id, source, timer}: the rollout followed live, if any

  function stop() {
    if (!following) return;
    if (following.source) following.source.close();
    clearTimeout(following.timer);
    following = null;
    $("rollout").dataset.live = "false";
  }

  const running = (data) => Boolean(data.run && data.run.running);

  // Redraw from the story, at most every 250 ms however fast events come.
  function refreshSoon(id) {
    if (!following || following.id !== id || following.timer) return;
    following.timer = setTimeout(async () => {
      if (!following || following.id !== id) return;
      following.timer = null;
      try {
        const data = await api("/rollouts/" + encodeURIComponent(id));
        if (!following || following.id !== id) return;
        render(data);
        if (!running(data)) stop();
        else if (!following.source) refreshSoon(id); // polling: the next read
      } catch (e) { /* the next event or poll tries again */ }
    }, following.source ? 250 : 2000);
  }

  function follow(id, data) {
    if (following && following.id === id) return;
    stop();
    if (!running(data)) return;
    following = { id, source: null, timer: null };
    $("rollout").dataset.live = "true";
    const url = "/api/v1/rollouts/" + encodeURIComponent(id) + "/events?last_event_id=" + (data.run.last_event_id || 0);
    const source = new EventSource(url);
    following.source = source;
    $("rollout").dataset.liveVia = "events";
    for (const kind of ["started", "state", "step", "progress", "done"]) source.addEventListener(kind, () => refreshSoon(id));
    source.addEventListener("done", () => source.close());
    source.onerror = () => {
      // A dropped stream reconnects by itself; one that cannot open (closed) falls back to polling.
      if (source.readyState === EventSource.CLOSED && following && following.source === source) {
        following.source = null;
        $("rollout").dataset.liveVia = "polling";
        refreshSoon(id);
      }
    };
  }

  async function show(id) {
    const data = await api("/rollouts/" + encodeURIComponent(id));
    render(data);
    follow(id, data);
  }

  return { show, stop };
})();
