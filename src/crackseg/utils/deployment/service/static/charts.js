// Small canvas charts of the status page (a deployment's CPU and memory samples): a line with
// a soft fill, four round grid lines, failed checks as red dots. Used by app.js.
"use strict";

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

