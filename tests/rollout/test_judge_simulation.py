"""The judge's promises, measured on the real judge over seeded simulated rollouts.

A/A (the canary is its stable): false rollbacks <= alpha plus binomial slack at 1, 5, 20
and 200 req/s with 0.1 % and 1 % errors, looks every second, steps [10, 25, 50, 100].
Bad canaries (2 % and 5 % errors against 0.1 %, p99 x 2 around the same median, 2.5 x
slower): never promoted; rolled back on evidence where the traffic allows, as
inconclusive otherwise. The race: a canary 20 x worse than its stable but under the
absolute limit is never promoted, and would be without the cap on the limit. The suite
runs a few hundred rollouts per level (seconds); benchmarks/bench_judge.py the full table.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter

import pytest

from crackseg.utils.deployment.rollout.judge import JudgeConfig
from crackseg.utils.deployment.rollout.judge.simulate import (
    Scenario,
    binomial,
    simulate_rollout,
)

ALPHA = JudgeConfig().alpha
BETA = JudgeConfig().beta


def _binomial_quantile(n: int, p: float, q: float) -> int:
    """The smallest k with P(Binomial(n, p) <= k) >= q."""
    total = 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if total >= q:
            return k
    return n


@pytest.mark.parametrize(("n", "p"), [(20, 0.01), (7, 0.5), (180, 0.1), (1000, 0.3), (5, 0.9)])
def test_the_binomial_sampler_has_the_binomial_law(n: int, p: float) -> None:
    rng = random.Random(11)
    draws = [binomial(n, p, rng) for _ in range(20_000)]
    assert statistics.mean(draws) == pytest.approx(
        n * p, abs=4 * math.sqrt(n * p * (1 - p) / 20_000)
    )
    assert statistics.variance(draws) == pytest.approx(n * p * (1 - p), rel=0.05)
    if n <= 20:
        counts = Counter(draws)
        cells = [
            (counts.get(k, 0), 20_000 * math.comb(n, k) * p**k * (1 - p) ** (n - k))
            for k in range(n + 1)
        ]
        cells = [(seen, want) for seen, want in cells if want >= 5]
        chi2 = sum((seen - want) ** 2 / want for seen, want in cells)
        df = len(cells) - 1
        assert chi2 < df + 6 * math.sqrt(2 * df)  # six standard deviations of chi2(df)


# (rate, rollouts): fewer where a rollout costs more looks of more traffic.
AA_LEVELS = [(1, 300), (5, 300), (20, 200), (200, 100)]


def test_a_healthy_canary_is_rarely_rolled_back_on_evidence_at_any_traffic() -> None:
    total, aborted = 0, 0
    table = {}
    for rate, n in AA_LEVELS:
        for baseline in (0.001, 0.01):
            scenario = Scenario("A/A", rate, baseline, baseline)
            results = Counter(simulate_rollout(scenario, seed).result for seed in range(n))
            table[(rate, baseline)] = results
            # Per level: no more aborts than a 1-in-1000 binomial tail allows at alpha.
            assert results["aborted"] <= _binomial_quantile(n, ALPHA, 0.999), table
            total += n
            aborted += results["aborted"]
    assert aborted <= _binomial_quantile(total, ALPHA, 0.999), table
    # Traffic decides how often a healthy canary can be shown safe within its bakes.
    assert table[(200, 0.01)]["promoted"] >= 0.8 * 100, table
    assert table[(1, 0.01)]["promoted"] == 0, table  # 3 canary requests a step: nothing shown


BAD = [
    Scenario("2% vs 0.1%", 0, 0.001, 0.02),
    Scenario("5% vs 0.1%", 0, 0.001, 0.05),
    Scenario("p99 x 2, median same", 0, 0.001, 0.001, canary_p99_factor=2.0),
    Scenario("2.5 x slower", 0, 0.001, 0.001, canary_median_factor=2.5),
]


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
def test_a_bad_canary_is_never_promoted_and_is_caught_where_traffic_allows(bad: Scenario) -> None:
    for rate, n in ((1, 60), (5, 60), (20, 60), (200, 40)):
        scenario = Scenario(
            bad.name,
            rate,
            bad.stable_error_rate,
            bad.canary_error_rate,
            bad.canary_median_factor,
            bad.canary_p99_factor,
        )
        outcomes = [simulate_rollout(scenario, seed) for seed in range(n)]
        results = Counter(o.result for o in outcomes)
        assert results["promoted"] == 0, (rate, results)
        if rate == 200:
            assert results["aborted"] == n, results
            median = statistics.median(o.seconds for o in outcomes)
            assert median <= 30, median  # within the first step's bake


def test_the_race_twenty_times_worse_under_the_absolute_limit_is_rolled_back() -> None:
    """Errors only, 200 req/s, steps [50, 100] with 5 s bakes: the absolute test is fast."""
    scenario = Scenario("race", 200, 0.001, 0.02)

    def run(cfg: JudgeConfig) -> Counter[str]:
        return Counter(
            simulate_rollout(
                scenario, seed, config=cfg, latency=False, steps=(50, 100), bake_seconds=5
            ).result
            for seed in range(200)
        )

    capped = run(JudgeConfig(max_error_rate=0.05))
    assert capped["promoted"] == 0 and capped["aborted"] == 200, capped
    # The same judge with the limit not tied to the stable (5 % for everyone) lets some
    # through: the rule is what holds the promotion bound here.
    uncapped = run(JudgeConfig(max_error_rate=0.05, limit_ratio=1000.0))
    assert uncapped["promoted"] >= 1, uncapped
