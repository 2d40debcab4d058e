"""The house keeps its shape: imports point down, no circle, no crowded room, no stale name.

The floors, from the ground (README, "Layout"): the root value modules, ``history``,
``delivery``, ``monitoring``, ``rollout``, ``service``; the two public faces on top. Every
import counts, those under ``TYPE_CHECKING`` and inside functions included: a circle held
together only for typing is still a circle a reader must untangle.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

PACKAGE = "crackseg.utils.deployment"
SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / Path(*PACKAGE.split("."))
FLOORS = ["<root>", "history", "delivery", "monitoring", "rollout", "service", "<faces>"]
FACES = {"health_monitoring", "orchestration"}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _floor(module: str) -> int:
    rest = module[len(PACKAGE) + 1 :].split(".") if module != PACKAGE else [""]
    if len(rest) == 1 and rest[0] not in FLOORS:  # a root module, not a package
        return FLOORS.index("<faces>") if rest[0] in FACES else FLOORS.index("<root>")
    return FLOORS.index(rest[0])


def _target(name: str) -> str | None:
    """The project module ``name`` stands for (a module, or the module holding a name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # ``from pkg import sub`` imports the submodule; ``from mod import Name`` the module.
            names = [f"{origin}.{a.name}" for a in node.names] + [origin]
            names = [n for n in names if n in MODULES] or [origin]
        else:
            continue
        for name in names:
            target = _target(name) if name.startswith(PACKAGE) else None
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _circles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_from_every_module() -> None:
    # The parse itself must work: a layout test that sees nothing passes for nothing.
    assert len(MODULES) > 80
    assert f"{PACKAGE}.delivery.base" in GRAPH[f"{PACKAGE}.delivery.dispatcher"]
    assert f"{PACKAGE}.models" in GRAPH[f"{PACKAGE}.health_monitoring"]


def test_no_import_circle_not_even_for_typing() -> None:
    assert _circles() == []


def test_imports_point_down_the_floors() -> None:
    upward = sorted(
        f"{src} -> {dst} ({FLOORS[_floor(src)]} imports {FLOORS[_floor(dst)]})"
        for src, targets in GRAPH.items()
        for dst in targets
        if _floor(dst) > _floor(src)
    )
    assert upward == []


def test_no_module_over_500_lines() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


_REF = re.compile(r":(?:mod|class|func|meth|data|attr|exc|obj):`~?(\.[\w.]+|crackseg[\w.]+)`")


def test_docstring_references_name_what_exists() -> None:
    """``:class:`~.store.HistoryStore``` and its kind resolve (relative to the module's
    package, as written): a module that moved leaves no reference behind."""
    stale = []
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for ref in _REF.findall(path.read_text()):
            if ref.startswith("."):
                dots = len(ref) - len(ref.lstrip("."))
                base = package.split(".")[: len(package.split(".")) - dots + 1]
                ref = ".".join([*base, ref.lstrip(".")])
            target = _target(ref)
            if target is None:
                stale.append(f"{module}: {ref}")
                continue
            obj = importlib.import_module(target)
            rest = ref[len(target) + 1 :].split(".") if ref != target else []
            for attr in rest:
                if not hasattr(obj, attr):
                    stale.append(f"{module}: {ref}")
                    break
                obj = getattr(obj, attr)
    assert stale == []
