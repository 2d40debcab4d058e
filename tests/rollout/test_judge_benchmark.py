"""benchmarks/bench_judge.py runs: a few rollouts of a cell through both judges."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from crackseg.utils.deployment.rollout.judge import JudgeConfig
from crackseg.utils.deployment.rollout.judge.simulate import Scenario

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_judge.py"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_judge_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_both_judges_see_the_same_traffic_and_the_table_row_reads(bench: ModuleType) -> None:
    scenario = Scenario("5 % vs 0.1 % errors", 200, 0.001, 0.05)
    edges, judge_idx, canary_idx = bench.edges_for(scenario)
    assert [edges[i] for i in judge_idx] == list(scenario.thresholds_ms())
    # The canary is binned at its shifted thresholds too: the judge's real rule.
    shifted = JudgeConfig().canary_thresholds(scenario.thresholds_ms())
    assert [edges[i] for i in canary_idx] == list(shifted)
    assert all(c > s for c, s in zip(canary_idx, judge_idx, strict=True))
    traffic = bench.SharedTraffic(scenario, 7, edges)
    first = [next(traffic(0, 0.1)) for _ in range(1)]
    again = traffic(0, 0.1)
    assert next(again) == first[0]  # replayed, not redrawn
    old = bench.old_rollout(scenario, traffic, judge_idx[-1])
    # 5 % errors sit right on the old gate's 5 % threshold: which verdict is the seed's, and
    # the same seed tells the same story (both judges of a row see one traffic).
    assert old.result in ("aborted", "promoted") and old.seconds > 0
    replay = bench.old_rollout(scenario, bench.SharedTraffic(scenario, 7, edges), judge_idx[-1])
    assert (replay.result, replay.seconds) == (old.result, old.seconds)
    row = bench.run_cell(scenario.name, scenario, 3)
    assert row[0] == "200" and row[2] == "100.0 % / 100.0 %" and row[-1] == "3 / 3"
