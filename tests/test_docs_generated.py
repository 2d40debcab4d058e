"""Every generated picture and reference under docs/ is what its generator in tools/ makes from
the code (or the kept benchmark and demo output) now: none can drift from what it shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tools import architecture, bench_plots, rollout_timeline

ROOT = Path(__file__).resolve().parent.parent


def test_the_architecture_picture_is_the_import_graph() -> None:
    assert architecture.OUT.read_text(encoding="utf-8") == architecture.render(), (
        "docs/architecture.svg is stale: run .venv/bin/python -m tools.architecture"
    )


def test_every_module_has_a_component_and_the_graph_has_the_known_edges() -> None:
    src = architecture.SRC
    faces = {"health_monitoring.py", "orchestration.py", "__init__.py"}
    for path in src.rglob("*.py"):
        rel = path.relative_to(src).as_posix()
        assert rel in faces or architecture.component_of(rel) is not None, rel
    found = architecture.edges()
    assert ("monitor", "engine") in found and ("orchestrator", "router") in found
    assert ("web (page, API)", "monitor") in found


def test_the_rollout_timeline_is_drawn_from_the_recorded_rollouts() -> None:
    rollouts = json.loads(rollout_timeline.DATA.read_text(encoding="utf-8"))
    assert rollout_timeline.OUT.read_text(encoding="utf-8") == rollout_timeline.render(rollouts)
    assert [r["state"] for r in rollouts] == ["success", "success", "rolled_back"]


@pytest.mark.parametrize("path", list(bench_plots.outputs()), ids=lambda p: p.name)
def test_the_plots_are_drawn_from_the_performance_tables(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == bench_plots.outputs()[path], (
        f"{path.name} is stale: run .venv/bin/python -m tools.bench_plots"
    )


def test_the_plots_hold_the_tables_figures() -> None:
    cpu, late = bench_plots.engine_points()
    assert [n for n, _ in cpu] == [n for n, _ in late] == [1_000, 10_000, 100_000]
    text = bench_plots.outputs()[bench_plots.PLOTS / "engine-cpu.svg"]
    for _, value in cpu:
        assert f">{value:g}</text>" in text
    assert bench_plots.judge_series(), "no judge table with an abort found"


def test_the_readme_shows_the_pictures_and_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for picture in ("docs/architecture.svg", "docs/rollout-timeline.svg",
                    "docs/screenshots/status_page.png"):  # fmt: skip
        assert f"]({picture})" in readme, picture
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of ``markdown``'s headings."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_every_link_to_a_section_finds_it() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([^)#:]+\.md)#([^)]+)\)", text):
            heads = _anchors((doc.parent / target).read_text(encoding="utf-8"))
            assert anchor in heads, f"{doc.name}: {target}#{anchor} names no heading"
