"""The judge stays a pure, small package: stdlib math and its own modules, nothing loaded
behind it, no import circle, no module over 500 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import crackseg.utils.deployment.rollout.judge as judge_pkg

PKG = Path(judge_pkg.__file__).parent
OWN = "crackseg.utils.deployment.rollout.judge"
ALLOWED = {
    "__future__",
    "collections.abc",
    "dataclasses",
    "enum",
    "itertools",
    "math",
    "random",
    "statistics",
    "typing",
    "crackseg.utils.deployment.errors",
}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_only_the_standard_library_and_its_own_modules() -> None:
    for path in PKG.glob("*.py"):
        foreign = {m for m in _imports(path) if m not in ALLOWED and not m.startswith(OWN)}
        assert not foreign, f"{path.name} imports {foreign}"
        assert len(path.read_text().splitlines()) <= 500, path.name


def test_no_import_circle_inside_the_package() -> None:
    graph = {
        f"{OWN}.{p.stem}": {m for m in _imports(p) if m.startswith(OWN + ".")}
        for p in PKG.glob("*.py")
        if p.stem != "__init__"
    }

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    for module in graph:
        assert not reaches(module, module, {module}), f"{module} imports itself back"


def test_importing_it_loads_nothing_heavy() -> None:
    code = (
        "import sys, crackseg.utils.deployment.rollout.judge\n"
        "heavy = ('aiohttp', 'numpy', 'scipy', 'prometheus_client', 'pydantic', 'psutil')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
