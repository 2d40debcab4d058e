"""Canary judge: the sequential judge against today's fixed-threshold one, same traffic.

Simulated rollouts (``crackseg.utils.deployment.rollout.judge.simulate``): steps
[10, 25, 50, 100], 30 s bakes, a look every second, ``analysis_timeout`` one more bake
(``DeploymentConfig``'s defaults), traffic at 1, 5, 20 and 200 req/s. Each seed's traffic
is drawn once per step and fed to both judges:

* **new**: :class:`~crackseg.utils.deployment.rollout.judge.CanaryJudge` with its defaults
  (alpha 1 %, beta 5 %), thresholds at the stable's p50/p90/p99 (the canary counted
  above each plus its latency margin); a step passes at the end
  of its bake on evidence of safety, else holds up to the timeout and fails closed;
* **old**: ``rollout/gate.py``'s ``judge_analysis`` driven as ``RolloutContext.observe``
  drives it: a ``PerformanceMonitor`` per step and arm over the router's measurement
  (cumulative for the step; percentiles read from 15 %-wide latency buckets by the
  project's ``histogram_quantile``), a healthy probe a look, ``min_samples`` 20,
  ``on_inconclusive="proceed"``.

Scenarios: A/A at 0.1 % and 1 % errors (a rollback is false); bad canaries (2 % and 5 %
errors against 0.1 %, p99 x 2 around the same median, 2.5 x slower throughout). For each:
the share promoted, rolled back on evidence, failed closed (new only: inconclusive at the
timeout), the median time to the abort and the median number of bad requests the canary
served before it (errors, or requests above the stable's p99). Then the judge's cost per
look with 10 thresholds after 100 batches.

Run: python benchmarks/bench_judge.py [A/A rollouts per level] [bad rollouts per level]
(defaults 2000 and 500; the old judge runs on the first 500 seeds of each).
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from collections.abc import Iterator

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.rollout.analysis import PerformanceMonitor, histogram_quantile
from crackseg.utils.deployment.rollout.config import DeploymentConfig
from crackseg.utils.deployment.rollout.gate import judge_analysis
from crackseg.utils.deployment.rollout.judge import ArmCounts, CanaryJudge, JudgeConfig
from crackseg.utils.deployment.rollout.judge.simulate import (
    Look,
    Outcome,
    Scenario,
    looks,
    simulate_rollout,
    step_rng,
)
from crackseg.utils.deployment.rollout.routers.base import TrafficStats

RATES = (1, 5, 20, 200)
STEPS = (10, 25, 50, 100)
OLD_ROLLOUTS = 500
CONFIG = DeploymentConfig("bench", "production")
BAKE = int(CONFIG.bake_seconds)
TIMEOUT = int(CONFIG.effective_analysis_timeout)
SCENARIOS = (
    ("A/A, 0.1 % errors", 0.001, 0.001, 1.0, 1.0),
    ("A/A, 1 % errors", 0.01, 0.01, 1.0, 1.0),
    ("2 % vs 0.1 % errors", 0.001, 0.02, 1.0, 1.0),
    ("5 % vs 0.1 % errors", 0.001, 0.05, 1.0, 1.0),
    ("p99 x 2, median same", 0.001, 0.001, 1.0, 2.0),
    ("2.5 x slower throughout", 0.001, 0.001, 2.5, 1.0),
)


def edges_for(scenario: Scenario) -> tuple[tuple[float, ...], tuple[int, ...], tuple[int, ...]]:
    """15 %-wide buckets from 50 ms to 5 s, with the judge's thresholds and the canary's
    shifted ones (its latency margin) among them: the edges, the indices of each."""
    ladder = [50.0 * 1.15**i for i in range(34)]
    judge, shifted = (
        scenario.thresholds_ms(),
        JudgeConfig().canary_thresholds(scenario.thresholds_ms()),
    )
    edges = tuple(sorted({*ladder, *judge, *shifted}))
    return edges, tuple(edges.index(t) for t in judge), tuple(edges.index(t) for t in shifted)


class SharedTraffic:
    """One seed's traffic, drawn once per step and replayed to every judge."""

    def __init__(self, scenario: Scenario, seed: int, edges: tuple[float, ...]) -> None:
        self.scenario, self.seed, self.edges = scenario, seed, edges
        self.steps: dict[int, tuple[list[Look], Iterator[Look]]] = {}

    def __call__(self, step: int, weight: float) -> Iterator[Look]:
        if step not in self.steps:
            gen = looks(self.scenario, weight, step_rng(self.seed, step), self.edges)
            self.steps[step] = ([], gen)
        seen, gen = self.steps[step]
        i = 0
        while True:
            if i == len(seen):
                seen.append(next(gen))
            yield seen[i]
            i += 1


def _stats(
    requests: int, errors: int, bins: list[int], edges: tuple[float, ...], seconds: int
) -> TrafficStats:
    if not requests:
        return TrafficStats(0, 0, float(seconds))
    cumulative, total = [], 0
    for bound, count in zip((*edges, math.inf), bins, strict=True):
        total += count
        cumulative.append((bound, float(total)))
    p50, p95, p99 = (histogram_quantile(q, cumulative) for q in (0.5, 0.95, 0.99))
    return TrafficStats(requests, errors, float(seconds), p50, p95, p99)


class _Arm:
    """One arm's cumulative counts over a step, as the router's log would give them."""

    def __init__(self, bins: int) -> None:
        self.requests = self.errors = 0
        self.bins = [0] * bins

    def add(self, requests: int, errors: int, bins: tuple[int, ...]) -> None:
        self.requests += requests
        self.errors += errors
        self.bins = [a + b for a, b in zip(self.bins, bins, strict=True)]


def old_rollout(scenario: Scenario, traffic: SharedTraffic, p99_edge: int) -> Outcome:
    """``judge_analysis`` as ``observe()`` drives it, with DeploymentConfig's defaults."""
    criteria, min_samples = CONFIG.criteria, CONFIG.min_samples
    out = Outcome("promoted", 0.0, 0)
    t = 0
    for step, weight in enumerate(STEPS):
        out.step = step
        stream = traffic(step, weight / 100.0)
        new, stable = _Arm(len(traffic.edges) + 1), _Arm(len(traffic.edges) + 1)
        current: dict[str, TrafficStats] = {}
        pm_new = PerformanceMonitor(traffic=lambda since, c=current: c["new"])
        # observe() compares with the stable only below 100 %.
        pm_stable = (
            PerformanceMonitor(traffic=lambda since, c=current: c["stable"])
            if weight < 100
            else None
        )
        for second in range(1, BAKE + TIMEOUT + 1):
            look = next(stream)
            t += 1
            out.canary_requests += look.canary_requests
            out.canary_errors += look.canary_errors
            out.canary_slow += sum(look.canary_bins[p99_edge + 1 :])
            new.add(look.canary_requests, look.canary_errors, look.canary_bins)
            stable.add(look.stable_requests, look.stable_errors, look.stable_bins)
            for name, arm in (("new", new), ("stable", stable)):
                current[name] = _stats(arm.requests, arm.errors, arm.bins, traffic.edges, second)
            pm_new.record_probe(HealthCheckResult(True, "healthy", scenario.median_ms))
            snap_stable = pm_stable.snapshot(min_samples=min_samples) if pm_stable else None
            g = judge_analysis(pm_new.snapshot(min_samples=min_samples), snap_stable, criteria)
            if g.failed:
                out.result, out.seconds = "aborted", float(t)
                return out
            if second >= BAKE and g.passed:
                break
        # Passed, or inconclusive at the timeout: on_inconclusive="proceed" goes on.
    out.seconds = float(t)
    return out


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def _aa_bound(n: int, alpha: float) -> float:
    """alpha plus binomial slack: the 99.9 % point of Binomial(n, alpha), as a share."""
    total = 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * alpha**k * (1 - alpha) ** (n - k)
        if total >= 0.999:
            return k / n
    return 1.0


def run_cell(name: str, scenario: Scenario, rollouts: int) -> list[str]:
    edges, judge_idx, canary_idx = edges_for(scenario)
    p99_edge = judge_idx[-1]
    new: list[Outcome] = []
    old: list[Outcome] = []
    for seed in range(rollouts):
        traffic = SharedTraffic(scenario, seed, edges)
        new.append(
            simulate_rollout(
                scenario,
                seed,
                steps=STEPS,
                bake_seconds=BAKE,
                analysis_timeout=TIMEOUT,
                traffic=traffic,
                edges=judge_idx,
                canary_edges=canary_idx,
            )
        )
        if seed < OLD_ROLLOUTS:
            old.append(old_rollout(scenario, traffic, p99_edge))
    bad_attr = "canary_slow" if "slow" in name or "p99" in name else "canary_errors"

    def summary(outs: list[Outcome]) -> tuple[str, str, str, str, str]:
        c = {
            r: sum(1 for o in outs if o.result == r)
            for r in ("promoted", "aborted", "inconclusive")
        }
        aborted = [o for o in outs if o.result == "aborted"]
        return (
            _pct(c["promoted"], len(outs)),
            _pct(c["aborted"], len(outs)),
            _pct(c["inconclusive"], len(outs)),
            _median([o.seconds for o in aborted]),
            _median([float(getattr(o, bad_attr)) for o in aborted]),
        )

    n_p, n_a, n_i, n_t, n_b = summary(new)
    o_p, o_a, _, o_t, o_b = summary(old)
    return [
        f"{scenario.rate:g}",
        f"{n_p} / {o_p}",
        f"{n_a} / {o_a}",
        n_i,
        f"{n_t} / {o_t}",
        f"{n_b} / {o_b}",
        f"{len(new)} / {len(old)}",
    ]


def cost_per_look() -> tuple[float, float, float]:
    """µs per look (observe + verdict), the same with the evidence read, and before latching."""
    thresholds = [float(t) for t in range(10, 110, 10)]
    rng = random.Random(3)

    def arm(n: int) -> ArmCounts:
        slow, left = [], n
        for _ in thresholds:
            left = sum(1 for _ in range(left) if rng.random() < 0.7)
            slow.append(left)
        return ArmCounts(n, sum(1 for _ in range(n) if rng.random() < 0.01), tuple(slow))

    batches = [(arm(20), arm(180)) for _ in range(200)]
    best = [math.inf, math.inf, math.inf]
    for _ in range(20):
        for mode in range(3):
            judge = CanaryJudge(JudgeConfig(), thresholds_ms=thresholds)
            timed = batches[:100] if mode == 2 else batches[100:]
            if mode < 2:
                for c, s in batches[:100]:
                    judge.observe(c, s)
            t0 = time.perf_counter()
            for c, s in timed:
                j = judge.observe(c, s)
                if mode == 1:
                    j.to_dict()
            best[mode] = min(best[mode], (time.perf_counter() - t0) / len(timed) * 1e6)
    return best[0], best[1], best[2]


def main() -> None:
    aa = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    bad = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    alpha = JudgeConfig().alpha
    t0 = time.monotonic()
    print("## Canary judge: sequential vs fixed thresholds (bench_judge.py)\n")
    print(
        f"Command: `python benchmarks/bench_judge.py {aa} {bad}`. Simulated rollouts on the "
        "real judge code (`rollout/judge/simulate.py`): steps [10, 25, 50, 100], 30 s bakes, "
        "a look every second, timeout one more bake; each seed's traffic drawn once per step "
        "and fed to both judges. **new** = `CanaryJudge` defaults (alpha 1 %, beta 5 %); "
        "**old** = `judge_analysis` driven as `observe()` drives it with `DeploymentConfig`'s "
        f'defaults (`on_inconclusive="proceed"`), on the first {OLD_ROLLOUTS} seeds. Cells '
        'read new / old. "rolled back" is on evidence (old: a threshold crossed); "failed '
        "closed\" is the new judge's inconclusive at the timeout (the old one proceeds). Bad "
        "requests: canary errors, or canary requests above the stable's p99 for the latency "
        "rows. A/A: false rollbacks must stay under alpha plus binomial slack, the 99.9 % "
        "point of Binomial(n, alpha) / n, printed under each A/A table.\n"
    )
    # (new, old) shares per row, for the reading below: written from this run's figures.
    promoted: dict[str, list[tuple[float, float]]] = {}
    rolled_back: dict[str, list[tuple[float, float]]] = {}
    for name, ps, pc, med, p99 in SCENARIOS:
        rollouts = aa if name.startswith("A/A") else bad
        print(f"**{name}**\n")
        print(
            "| req/s | promoted | rolled back | failed closed (new) | median s to abort "
            "| median bad requests before abort | rollouts |"
        )
        print("|---|---|---|---|---|---|---|")
        for rate in RATES:
            scenario = Scenario(name, rate, ps, pc, med, p99)
            row = run_cell(name, scenario, rollouts)
            print("| " + " | ".join(row) + " |")
            promoted.setdefault(name, []).append(_pair(row[1]))
            rolled_back.setdefault(name, []).append(_pair(row[2]))
        if name.startswith("A/A"):
            print(f"\nalpha + slack at n = {aa}: {100 * _aa_bound(aa, alpha):.2f} %")
        print()
    plain, read, early = cost_per_look()
    print("**Cost per look** (10 thresholds, after 100 batches; best of 20 runs of 100 looks)\n")
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| observe + verdict, safety already shown | {plain:.1f} µs | < 50 µs |")
    print(f"| the same, evidence read (`to_dict()`) every look | {read:.1f} µs | - |")
    print(f"| observe + verdict, looks 1-100 (safety still gathering) | {early:.1f} µs | < 50 µs |")
    aa_names = [n for n in promoted if n.startswith("A/A")]
    bad_names = [n for n in promoted if not n.startswith("A/A")]
    bad_new = max(new for n in bad_names for new, _ in promoted[n])
    aa_new = max(new for n in aa_names for new, _ in rolled_back[n])
    aa_old = max(old for n in aa_names for _, old in rolled_back[n])
    worse = [old for _, old in promoted.get("2 % vs 0.1 % errors", [])]
    print(
        f"\nReading: the new judge promoted a bad canary in at most {bad_new:.1f} % of rollouts "
        f"and rolled healthy ones back in at most {aa_new:.1f} % (alpha + slack: "
        f"{100 * _aa_bound(aa, alpha):.2f} %); the old one promoted the 20 x worse canary in "
        f"{min(worse, default=0):.0f}-{max(worse, default=0):.0f} % of rollouts and rolled "
        f"healthy ones back up to {aa_old:.1f} % of the time. Where a 10 % step "
        "cannot gather the ~200 canary requests safety takes within its bake and timeout "
        "(1-20 req/s), the new judge fails closed instead of passing on no data: such a "
        "service needs the rollout's synthetic `load`, longer bakes or larger steps."
    )
    print(f"\n(simulation and table in {time.monotonic() - t0:.0f} s)")


def _pair(cell: str) -> tuple[float, float]:
    """``"95.2 % / 99.8 %"`` (new / old) as numbers."""
    new, old = (part.strip().rstrip("%").strip() for part in cell.split("/"))
    return (float(new) if new not in ("", "-") else 0.0), (
        float(old) if old not in ("", "-") else 0.0
    )


if __name__ == "__main__":
    main()
