"""Plot the key figures of docs/performance.md from its own tables (so the plots and the tables
come from the same ``make bench`` run: benchmarks/run_all.py calls this after writing them).

- docs/plots/engine-cpu.svg and engine-lateness.svg: CPU and p99 lateness against deployments
  (``bench_engine.py``'s rows with the library's defaults and an in-memory history);
- docs/plots/judge-detection.svg: the canary judge's median time to abort a bad version
  against traffic (``bench_judge.py``'s tables with an error-rate or latency regression).

    python -m tools.bench_plots          # redraw from docs/performance.md
    python -m tools.bench_plots --check  # exit 1 if a plot is stale
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tools.svg import line_chart

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE = ROOT / "docs" / "performance.md"
PLOTS = ROOT / "docs" / "plots"

Table = list[dict[str, str]]


def section(text: str, title_start: str) -> str:
    """The body of the ``## `` section whose title starts with ``title_start``."""
    start = text.index("\n## " + title_start)
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def tables(body: str) -> list[tuple[str, Table]]:
    """Every Markdown table of ``body`` with the bold caption above it (or "")."""
    found: list[tuple[str, Table]] = []
    rows: Table = []
    caption, header = "", None
    for line in [*body.splitlines(), ""]:
        bold = re.fullmatch(r"\*\*(.+)\*\*", line.strip())
        if bold:
            caption = bold.group(1)
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: "):
                rows.append(dict(zip(header, cells, strict=False)))
        elif header is not None:
            found.append((caption, rows))
            rows, header = [], None
    return found


def _first_number(cell: str) -> float | None:
    m = re.search(r"-?\d[\d,]*\.?\d*", cell)
    return float(m.group(0).replace(",", "")) if m else None


def engine_points() -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(deployments, CPU %) and (deployments, p99 lateness ms) of the default-settings rows."""
    body = section(PERFORMANCE.read_text(encoding="utf-8"), "Scheduling many deployments")
    cpu, late = [], []
    for row in tables(body)[0][1]:
        config = row["configuration"]
        if "memory, defaults" not in config or "tuning" in config:
            continue
        n, c, p = (_first_number(config), _first_number(row["CPU % of one core"]),
                   _first_number(row["p99 lateness"]))  # fmt: skip
        if n is not None and c is not None and p is not None:
            cpu.append((n, c))
            late.append((n, p))
    return sorted(cpu), sorted(late)


def judge_series() -> list[tuple[str, list[tuple[float, float]]]]:
    """Per regression, (req/s, median seconds to abort) of the new judge where it aborted."""
    body = section(PERFORMANCE.read_text(encoding="utf-8"), "Canary judge")
    series = []
    for caption, rows in tables(body):
        if not caption or caption.startswith("A/A"):
            continue
        points = []
        for row in rows:
            new = row.get("median s to abort", "").split("/")[0].strip()
            rate, secs = _first_number(row.get("req/s", "")), _first_number(new)
            if rate is not None and secs is not None and new != "-":
                points.append((rate, secs))
        if points:
            series.append((caption, points))
    return series


def outputs() -> dict[Path, str]:
    """Each plot and its SVG text."""
    cpu, late = engine_points()
    return {
        PLOTS / "engine-cpu.svg": line_chart(
            "CPU of one core against deployments (10 s interval)", "deployments (log scale)",
            "CPU % of one core", [("defaults, memory store", cpu)], log_x=True),
        PLOTS / "engine-lateness.svg": line_chart(
            "p99 lateness of checks against deployments", "deployments (log scale)",
            "p99 lateness (ms)", [("defaults, memory store", late)], log_x=True),
        PLOTS / "judge-detection.svg": line_chart(
            "Canary judge: median time to abort a bad version", "canary traffic (req/s, log)",
            "seconds to abort", judge_series(), log_x=True),
    }  # fmt: skip


def main(argv: list[str]) -> int:
    stale = []
    for path, text in outputs().items():
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{path} is stale: run python -m tools.bench_plots", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
