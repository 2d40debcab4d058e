// Range charts: a deployment's response time and availability over 1 h / 24 h / 7 d / 30 d,
// from buckets the server downsampled (/api/v1/deployments/{id}/range). The band is min-max,
// the line the mean, the dashed line p95; under it, each bucket's availability as a strip
// (green up, amber degraded, red down, grey no data). Hover or arrow keys show one bucket;
// drag across the chart to zoom into those buckets, double-click (or Escape) to see all.
"use strict";

const RangeChart = (() => {
  const PAD = { l: 46, r: 12, t: 12, b: 40 };
  const STRIP = 8;

  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const fmtMs = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(1) + " ms" : Math.round(v) + " ms");
  const fmtShare = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(v < 1 && v > 0.999 ? 2 : 1) + " %");

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function timeLabel(t, span) {
    const d = new Date(t * 1000);
    if (span <= 86400) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
    return d.toLocaleDateString([], { month: "short", day: "numeric" });
  }

  // data: the range endpoint's answer. Returns a function mapping an x offset to a bucket index.
  function draw(canvas, data, active) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600;
    const h = canvas.clientHeight || 220;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    const b = data && data.buckets;
    const n = b ? b.t.length : 0;
    const muted = css("--muted");
    if (!n || !b.count.some((c) => c > 0)) {
      ctx.fillStyle = muted;
      ctx.textAlign = "center";
      ctx.fillText("No checks in this range", w / 2, h / 2);
      return () => -1;
    }
    const plotH = h - PAD.t - PAD.b;
    const slot = (w - PAD.l - PAD.r) / n;
    const x = (i) => PAD.l + (i + 0.5) * slot;
    const vmax = niceMax(Math.max(1, ...b.max.filter((v) => v !== null)) * 1.05);
    const y = (v) => PAD.t + (1 - v / vmax) * plotH;

    ctx.strokeStyle = css("--line");
    ctx.fillStyle = muted;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let k = 0; k <= 4; k++) {
      const v = (vmax * k) / 4;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(PAD.l, yy); ctx.lineTo(w - PAD.r, yy); ctx.stroke();
      ctx.fillText(String(Number(v.toPrecision(3))), PAD.l - 6, yy);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const span = data.until - data.since;
    for (const i of [0, Math.floor(n / 2), n - 1]) {
      ctx.fillText(timeLabel(b.t[i], span), Math.min(Math.max(x(i), PAD.l + 24), w - PAD.r - 24), h - PAD.b + STRIP + 8);
    }

    const accent = css("--accent");
    // Runs of buckets with data: a gap in the data is a gap in the line, never a bridge.
    const runs = [];
    let run = [];
    for (let i = 0; i < n; i++) {
      if (b.mean[i] === null) { if (run.length) runs.push(run); run = []; } else run.push(i);
    }
    if (run.length) runs.push(run);
    ctx.fillStyle = accent + "33";
    for (const r of runs) {
      ctx.beginPath();
      r.forEach((i, k) => (k ? ctx.lineTo(x(i), y(b.max[i])) : ctx.moveTo(x(i), y(b.max[i]))));
      for (let k = r.length - 1; k >= 0; k--) ctx.lineTo(x(r[k]), y(b.min[r[k]]));
      ctx.closePath();
      ctx.fill();
    }
    const line = (key, color, dash) => {
      ctx.strokeStyle = color;
      ctx.lineWidth = dash ? 1.2 : 2;
      ctx.setLineDash(dash ? [4, 3] : []);
      for (const r of runs) {
        ctx.beginPath();
        r.forEach((i, k) => (k ? ctx.lineTo(x(i), y(b[key][i])) : ctx.moveTo(x(i), y(b[key][i]))));
        if (r.length === 1) ctx.arc(x(r[0]), y(b[key][r[0]]), 1.5, 0, 2 * Math.PI);
        ctx.stroke();
      }
      ctx.setLineDash([]);
    };
    line("p95", css("--warn"), true);
    line("mean", accent, false);

    // Availability strip.
    const sy = h - PAD.b + 2;
    for (let i = 0; i < n; i++) {
      const x0 = PAD.l + i * slot;
      if (!b.count[i]) { ctx.fillStyle = css("--unk-bg"); ctx.fillRect(x0, sy, Math.max(1, slot - 0.5), STRIP); continue; }
      let top = sy;
      for (const [key, color] of [["down", "--bad"], ["degraded", "--warn"], ["up", "--ok"]]) {
        const hh = (b[key][i] || 0) * STRIP;
        if (hh <= 0) continue;
        ctx.fillStyle = css(color);
        ctx.fillRect(x0, top, Math.max(1, slot - 0.5), hh);
        top += hh;
      }
    }
    if (active !== null && active >= 0 && active < n) {
      ctx.strokeStyle = muted;
      ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(Math.round(x(active)) + 0.5, PAD.t); ctx.lineTo(Math.round(x(active)) + 0.5, sy + STRIP); ctx.stroke();
    }
    return (px) => Math.max(0, Math.min(n - 1, Math.floor((px - PAD.l) / slot)));
  }

  function describe(data, i) {
    const b = data.buckets;
    const when = new Date(b.t[i] * 1000).toLocaleString([], { hour12: false });
    if (!b.count[i]) return when + " · no checks";
    return [when, b.count[i] + " checks", "mean " + fmtMs(b.mean[i]), "p95 " + fmtMs(b.p95[i]),
      "min " + fmtMs(b.min[i]), "max " + fmtMs(b.max[i]), "up " + fmtShare(b.up[i]),
      b.degraded[i] ? "degraded " + fmtShare(b.degraded[i]) : null, b.down[i] ? "down " + fmtShare(b.down[i]) : null]
      .filter(Boolean).join(" · ");
  }

  // Buckets lo..hi (inclusive) of a range answer, as an answer of their own.
  function slice(data, lo, hi) {
    const b = data.buckets;
    const buckets = {};
    for (const k of Object.keys(b)) buckets[k] = b[k].slice(lo, hi + 1);
    return { ...data, since: b.t[lo], until: b.t[hi] + data.bucket_seconds, buckets };
  }

  // A chart bound to a canvas and a read-out element; set(data) redraws (and unzooms).
  function bind(canvas, readout) {
    let full = null;
    let data = null;
    let zoom = null; // [lo, hi] bucket indices of full, or null: everything
    let drag = null; // {x0, i0, x}: a selection being dragged
    let index = () => -1;
    let active = null;
    const redraw = () => {
      index = draw(canvas, data, active);
      if (drag && drag.x !== drag.x0) {
        const ctx = canvas.getContext("2d");
        ctx.fillStyle = css("--accent") + "40";
        ctx.fillRect(Math.min(drag.x0, drag.x), PAD.t, Math.abs(drag.x - drag.x0), canvas.clientHeight - PAD.t - PAD.b + STRIP);
      }
    };
    const setZoom = (z) => {
      zoom = z && full ? z : null;
      data = zoom ? slice(full, zoom[0], zoom[1]) : full;
      canvas.dataset.zoom = zoom ? zoom[0] + "-" + zoom[1] : "";
      canvas.dataset.zoomBuckets = data ? String(data.buckets.t.length) : "";
      active = null;
      readout.textContent = "";
      redraw();
    };
    const offset = () => (zoom ? zoom[0] : 0);
    const xOf = (ev) => ev.clientX - canvas.getBoundingClientRect().left;
    canvas.addEventListener("mousedown", (ev) => {
      if (!data || ev.button !== 0 || ev.detail > 1) return;
      drag = { x0: xOf(ev), i0: index(xOf(ev)), x: xOf(ev) };
    });
    window.addEventListener("mouseup", (ev) => {
      if (!drag) return;
      const i1 = index(xOf(ev));
      const [lo, hi] = [Math.min(drag.i0, i1), Math.max(drag.i0, i1)];
      drag = null;
      if (hi > lo) setZoom([offset() + lo, offset() + hi]);
      else redraw();
    });
    canvas.addEventListener("dblclick", () => { drag = null; setZoom(null); });
    const point = (i) => {
      active = i;
      redraw();
      readout.textContent = i >= 0 && data ? describe(data, i) : "";
      readout.dataset.bucket = i >= 0 ? String(i) : "";
    };
    canvas.tabIndex = 0;
    canvas.addEventListener("mousemove", (ev) => {
      if (drag) drag.x = xOf(ev);
      point(index(xOf(ev)));
    });
    canvas.addEventListener("mouseleave", () => point(-1));
    canvas.addEventListener("keydown", (ev) => {
      if (!data) return;
      const n = data.buckets.t.length;
      let i = active === null || active < 0 ? n - 1 : active;
      if (ev.key === "ArrowLeft") i = Math.max(0, i - 1);
      else if (ev.key === "ArrowRight") i = Math.min(n - 1, i + 1);
      else if (ev.key === "Escape" && zoom) { ev.preventDefault(); setZoom(null); return; }
      else return;
      ev.preventDefault();
      point(i);
    });
    canvas.addEventListener("blur", () => point(-1));
    return {
      // A refresh of the same range keeps the zoom on the same times (buckets slide as
      // time passes); another range shows everything.
      set(d) {
        const keep = zoom && full && d && d.range === full.range && d.deployment_id === full.deployment_id ? [full.buckets.t[zoom[0]], full.buckets.t[zoom[1]]] : null;
        full = d;
        drag = null;
        if (!keep) { setZoom(null); return; }
        const t = d.buckets.t;
        const lo = t.findIndex((v) => v >= keep[0]);
        const hi = t.findLastIndex((v) => v <= keep[1]);
        setZoom(lo >= 0 && hi > lo ? [lo, hi] : null);
      },
      redraw,
      point,
    };
  }

  return { bind, describe };
})();
