"""Draw docs/architecture.svg from the real import graph of src/: each box is a component (the
modules listed for it in :data:`COMPONENTS`), each arrow "imports" between two components, as
the source says today. Rows are the package layers, imports pointing down.

    python -m tools.architecture          # rewrite docs/architecture.svg
    python -m tools.architecture --check  # exit 1 if it is stale
"""

from __future__ import annotations

import ast
import sys
from fnmatch import fnmatch
from pathlib import Path

from tools.svg import Svg

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "crackseg" / "utils" / "deployment"
OUT = ROOT / "docs" / "architecture.svg"
PACKAGE = "crackseg.utils.deployment"

#: Layer (top row first) -> components, each with the module globs (relative to SRC) it covers.
#: The first component of a layer whose globs match a module owns it; the last takes the rest.
LAYERS: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = (
    ("service", (
        ("web (page, API)", ("service/web/*", "service/static/*")),
        ("cli", ("service/cli/*",)),
        ("metrics", ("service/metrics.py", "service/exposition.py", "service/*_metrics.py",
                     "service/*famil*.py", "service/resource_counters.py", "service/store_health.py")),
        ("service, config", ("service/*",)),
    )),
    ("rollout", (
        ("judge, gate", ("rollout/judge/*", "rollout/analysis.py", "rollout/gate.py",
                         "rollout/guard.py", "rollout/load.py")),
        ("strategies", ("rollout/strategies/*",)),
        ("router", ("rollout/routers/*",)),
        ("targets", ("rollout/targets/*", "rollout/launchers.py")),
        ("orchestrator", ("rollout/*",)),
    )),
    ("monitoring", (
        ("engine", ("monitoring/engine.py", "monitoring/overload.py", "monitoring/isolation.py")),
        ("checks", ("monitoring/checks/*",)),
        ("resources", ("monitoring/resources/*",)),
        ("rules, suppression", ("monitoring/rules.py", "monitoring/suppression.py",
                                "monitoring/flapping.py")),
        ("monitor", ("monitoring/*",)),
    )),
    ("delivery", (
        ("channels", ("delivery/channels/*",)),
        ("dispatcher, outbox", ("delivery/*",)),
    )),
    ("history", (
        ("store (memory, SQLite)", ("history/*",)),
    )),
    ("values", (
        ("models, errors, redact", ("*",)),
    )),
)  # fmt: skip


def component_of(rel: str) -> str | None:
    """The component owning module ``rel`` (a path below SRC), or None for the faces."""
    if rel in ("health_monitoring.py", "orchestration.py", "__init__.py"):
        return None  # the public faces only re-export
    for _, comps in LAYERS:
        for name, globs in comps:
            if any(fnmatch(rel, g) for g in globs):
                return name
    return None


def _module_file(dotted: str) -> str | None:
    if not dotted.startswith(PACKAGE + "."):
        return None
    rel = dotted.removeprefix(PACKAGE + ".").replace(".", "/")
    for candidate in (rel + ".py", rel + "/__init__.py"):
        if (SRC / candidate).exists():
            return candidate
    return None


def edges() -> set[tuple[str, str]]:
    """(importer, imported) component pairs, from every import in src/."""
    found = set()
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        src = component_of(rel)
        if src is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                target = _module_file(name)
                dst = component_of(target) if target else None
                if dst is not None and dst != src:
                    found.add((src, dst))
    return found


def render() -> str:
    """docs/architecture.svg as the code imports today."""
    box_w, box_h, gap_x, row_h, left = 150.0, 34.0, 14.0, 84.0, 110.0
    widest = max(len(c) for _, c in LAYERS)
    width = left + widest * (box_w + gap_x) + 10
    svg = Svg(width, 84 + len(LAYERS) * row_h)
    svg.text(width / 2, 22, "Components and their imports, from the source (arrows point to "
             "what is imported)", 14, "middle", bold=True)  # fmt: skip
    svg.text(width / 2, 40, "Every component imports the root values (arrows to them left out);"
             " an arrow up a layer (red) breaks the layering", 11, "middle", "#475569")  # fmt: skip
    where: dict[str, tuple[float, float]] = {}
    row_of: dict[str, int] = {}
    for row, (layer, comps) in enumerate(LAYERS):
        y = 60 + row * row_h
        label = layer + "/" if layer != "values" else "root values"
        svg.text(12, y + box_h / 2 + 4, label, 12, fill="#475569", bold=True)
        offset = left + (widest - len(comps)) * (box_w + gap_x) / 2
        for i, (name, _) in enumerate(comps):
            where[name], row_of[name] = (offset + i * (box_w + gap_x), y), row
    bottom = LAYERS[-1][1][0][0]
    drawn = sorted((s, d) for s, d in edges() if d != bottom)
    outs = {n: [d for s, d in drawn if s == n] for n in where}
    ins = {n: [s for s, d in drawn if d == n] for n in where}

    def spread(name: str, k: int, n: int) -> float:
        return where[name][0] + box_w * (k + 1) / (n + 1)

    for src, dst in drawn:
        (_, y1), (_, y2) = where[src], where[dst]
        x1 = spread(src, outs[src].index(dst), len(outs[src]))
        x2 = spread(dst, ins[dst].index(src), len(ins[dst]))
        up = row_of[dst] < row_of[src]
        colour = "#dc2626" if up else "#94a3b8"
        if row_of[src] == row_of[dst]:  # an arc below the row
            svg.curve(x1, y1 + box_h, (x1 + x2) / 2, y1 + box_h + 34, x2, y2 + box_h, colour)
        elif up:
            svg.curve(x1, y1, (x1 + x2) / 2 + 40, (y1 + y2) / 2, x2, y2 + box_h, colour)
        else:
            svg.line(x1, y1 + box_h, x2, y2, colour, 1, arrow=True)
    fills = ("#eff6ff", "#fef3c7", "#ecfdf5", "#fce7f3", "#f1f5f9", "#f8fafc")
    for row, (_, comps) in enumerate(LAYERS):
        for name, _ in comps:
            x, y = where[name]
            svg.rect(x, y, box_w, box_h, fills[row])
            svg.text(x + box_w / 2, y + box_h / 2 + 4, name, 12, "middle")
    return svg.document()


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python -m tools.architecture", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
