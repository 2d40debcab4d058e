"""Draw docs/rollout-timeline.svg: the rollouts of ``make run``'s demo (a blue-green of v1, one of
v2, then a canary of a bad v3 rolled back), each state of each rollout on a time line.

    python -m tools.rollout_timeline --record  # run the demo (needs nginx), keep its records
    python -m tools.rollout_timeline           # redraw the picture from the kept records
    python -m tools.rollout_timeline --check   # exit 1 if the picture is stale

The records are what the demo's ``GET /api/v1/deploys`` answered, kept in
docs/data/demo-rollouts.json so the picture is redrawn (and checked) without rerunning it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tools.svg import Svg

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data" / "demo-rollouts.json"
OUT = ROOT / "docs" / "rollout-timeline.svg"
COLOURS = {
    "pending": "#cbd5e1", "in_progress": "#93c5fd", "health_checking": "#fde68a",
    "success": "#86efac", "rolling_back": "#fca5a5", "rolled_back": "#f87171",
    "failed": "#ef4444",
}  # fmt: skip


def record(timeout: float = 240.0) -> list[dict[str, Any]]:
    """Run the demo until its three rollouts ended; their records, oldest first."""
    demo = ROOT / ".venv" / "bin" / "crackseg-monitor"
    proc = subprocess.Popen([str(demo), "demo", "--port", "0", "--duration", str(timeout)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        base = None
        for line in proc.stdout:
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                base = found.group(0)
                break
        if base is None:
            raise RuntimeError("the demo printed no address")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{base}/api/v1/deploys?limit=10", timeout=5) as r:
                rows = json.loads(r.read())["deployments"]
            if len(rows) >= 3 and all(row["end_time"] for row in rows):
                return sorted(rows, key=lambda row: row["start_time"])
            time.sleep(2)
        raise TimeoutError("the demo's rollouts did not end in time")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def render(rollouts: list[dict[str, Any]]) -> str:
    """The timeline of ``rollouts`` (records as the API answers them) as SVG: one lane per
    rollout, in seconds since it started, each state a bar labelled with its reason."""
    span = max((r["end_time"] or r["start_time"]) - r["start_time"] for r in rollouts)
    left, right, lane, top, width = 150.0, 30.0, 78.0, 56.0, 960.0
    scale = (width - left - right) / max(span, 0.5)
    svg = Svg(width, top + lane * len(rollouts) + 70)
    svg.text(width / 2, 24, "The demo's rollouts through nginx, state by state "
             "(recorded from GET /api/v1/deploys)", 14, "middle", bold=True)  # fmt: skip
    for i, r in enumerate(rollouts):
        y, t0 = top + i * lane, r["start_time"]
        svg.text(12, y + 17, f"{r['version']} {r['strategy'].replace('_', '-')}", 13, bold=True)
        svg.text(12, y + 33, f"ended {r['state'].replace('_', ' ')}", 11, fill="#475569")
        if r.get("rollback_reason"):
            svg.text(12, y + 48, "(see reason below)", 10, fill="#b91c1c")
        steps = [st for k, st in enumerate(r["state_history"])
                 if k + 1 == len(r["state_history"])
                 or r["state_history"][k + 1]["timestamp"] > st["timestamp"] + 0.02]  # fmt: skip
        for k, step in enumerate(steps):
            start = step["timestamp"] - t0
            end = steps[k + 1]["timestamp"] - t0 if k + 1 < len(steps) else start
            x, w = left + start * scale, max((end - start) * scale, 3.0)
            svg.rect(x, y, w, 24, COLOURS.get(step["state"], "#e2e8f0"), "#475569", 2)
            reason = step.get("reason") or ""
            room = int(w / 6)  # characters that fit under the bar
            label = reason if len(reason) <= room else reason[: max(room - 3, 0)] + "..."
            if room >= 6 and k + 1 < len(steps):  # the last state is the lane's "ended"
                svg.text(x + 4, y + 40 + (k % 2) * 13, label, 10, fill="#334155")
    axis_y = top + lane * len(rollouts)
    svg.line(left, axis_y, width - right, axis_y, "#334155")
    tick = 0.5 if span <= 10 else 5.0
    for n in range(int(span / tick) + 1):
        x = left + n * tick * scale
        svg.line(x, axis_y, x, axis_y + 4, "#334155")
        svg.text(x, axis_y + 17, f"{n * tick:g} s", 10, "middle", "#475569")
    used = sorted({s["state"] for r in rollouts for s in r["state_history"]},
                  key=list(COLOURS).index)  # fmt: skip
    for k, state in enumerate(used):
        x = left + k * 120
        svg.rect(x, axis_y + 34, 12, 12, COLOURS[state], "#475569", 2)
        svg.text(x + 16, axis_y + 44, state.replace("_", " "), 11)
    return svg.document()


def main(argv: list[str]) -> int:
    if "--record" in argv:
        DATA.parent.mkdir(parents=True, exist_ok=True)
        DATA.write_text(json.dumps(record(), indent=1) + "\n", encoding="utf-8")
    text = render(json.loads(DATA.read_text(encoding="utf-8")))
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python -m tools.rollout_timeline", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
