"""The monitoring package's house rules: imports point down (never into rollout/ or
service/), no import circle among its modules (typing-only imports included), and no module
over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import crackseg.utils.deployment.monitoring as monitoring_pkg

ROOT = Path(monitoring_pkg.__file__).resolve().parent
PREFIX = "crackseg.utils.deployment."
ABOVE = ("rollout", "service", "health_monitoring", "orchestration")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("monitoring", *parts))
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every module named by an import in ``path`` (relative to the deployment package),
    whether it runs or only serves typing."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n.removeprefix(PREFIX) for n in names if n.startswith(PREFIX)}


def test_imports_point_down_and_close_no_circle() -> None:
    mods = _modules()
    graph = {m: {n for n in _imports(p) if n in mods and n != m} for m, p in mods.items()}
    upward = [(m, n) for m, p in mods.items() for n in _imports(p) if n.split(".")[0] in ABOVE]
    assert not upward, upward
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for n in sorted(graph[m]):
            assert seen.get(n) != 1, "import circle: " + " -> ".join([*path, m, n])
            if n not in seen:
                visit(n, [*path, m])
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m, [])


def test_no_module_over_500_lines() -> None:
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
