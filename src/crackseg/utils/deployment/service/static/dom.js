// What both pages build with (the private page, app.js, and the public view, status.js):
// element lookup, element building with text nodes only (never innerHTML), and the uptime
// figure, which must read the same on both. Loaded before either page's script.
"use strict";

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

// Uptime has one format everywhere (both pages and the CLI): one decimal, rounded down, so
// 99.96 % never reads as 100.0 %.
const fmtUptime = (v) => (v === null || v === undefined ? "–" : (Math.floor(v * 10 + 1e-9) / 10).toFixed(1) + " %");
