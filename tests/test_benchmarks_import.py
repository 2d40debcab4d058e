"""Every benchmark module imports: a broken one fails the suite, not the lead's `make bench`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCH.glob("*.py"))


def test_benchmarks_are_found() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"run_all.py", "bench_engine.py", "bench_checks.py", "bench_history.py"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_module_imports(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The scripts import their siblings (_nginx) from their own folder, as when run directly.
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"_bench_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)  # runs the module body, never main()
    if script.stem.startswith("bench_") or script.stem == "run_all":
        assert callable(getattr(module, "main", None)), f"{script.name} has no main()"


def test_the_metrics_benchmark_runs_on_a_few_deployments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its stand-in monitor must keep up with what build_registry reads (it once lacked a
    store and `make bench` failed at that section)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("_bench_metrics_run", BENCH / "bench_metrics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "DEPLOYMENTS", 50)
    monkeypatch.setattr(module, "RUNS", 1)
    module.main()
    assert "| text format |" in capsys.readouterr().out
