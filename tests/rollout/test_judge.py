"""The canary judge's formulas and edge cases, on the real code with hand-made counts."""

from __future__ import annotations

import json
import math
import random

import pytest

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.rollout.judge import (
    ArmCounts,
    CanaryJudge,
    JudgeConfig,
    JudgeVerdict,
    ReasonCode,
    count_slow,
    freeze_thresholds,
)
from crackseg.utils.deployment.rollout.judge.evalues import (
    BelowLimit,
    RatioGrid,
    SplitEvidence,
    StitchedLowerBound,
    kl_bernoulli,
    log_mean_exp,
    rate_bound,
    theta,
)
from crackseg.utils.deployment.rollout.judge.slow import SlowEvidence

TH = (100.0, 250.0, 900.0)


def _binom_pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


# -- formulas -------------------------------------------------------------------------
def test_theta_is_the_canary_share_of_events_and_grows_with_the_ratio() -> None:
    assert theta(1.0, 0.1) == pytest.approx(0.1)
    assert theta(20.0, 0.1) == pytest.approx(2.0 / 2.9)
    values = [theta(r, 0.25) for r in (0.5, 1.0, 1.1, 2.0, 10.0)]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert theta(5.0, 0.0) == 0.0 and theta(5.0, 1.0) == 1.0


def test_log_mean_exp_is_exact_and_does_not_overflow() -> None:
    assert log_mean_exp([0.0, math.log(3.0)]) == pytest.approx(math.log(2.0))
    assert log_mean_exp([1000.0, 1000.0]) == pytest.approx(1000.0)
    assert log_mean_exp([]) == -math.inf


def test_rate_bound_is_the_chernoff_bound() -> None:
    # No event in n: n * log(1 / (1 - q)) = log(1 / delta), so q = 1 - delta ** (1 / n).
    assert rate_bound(0, 100, 0.01, upper=True) == pytest.approx(1 - 0.01 ** (1 / 100))
    assert rate_bound(0, 100, 0.01, upper=False) == 0.0
    hi, lo = rate_bound(30, 1000, 0.01, upper=True), rate_bound(30, 1000, 0.01, upper=False)
    assert lo < 0.03 < hi
    for q in (hi, lo):
        assert 1000 * kl_bernoulli(0.03, q) == pytest.approx(math.log(100), rel=1e-6)
    assert rate_bound(0, 0, 0.01, upper=True) == 1.0


def test_split_evidence_matches_the_likelihood_ratio_written_out() -> None:
    grid = RatioGrid(1.1, (1.5, 3.0, 10.0), max_ratio=2.0, better=(0.5, 1.0))
    ev = SplitEvidence(grid)
    batches = [(3, 1, 0.1), (0, 2, 0.25), (5, 0, 0.5), (1, 1, 0.1)]  # (x, y, rho)
    for x, y, rho in batches:
        ev.add_split(x, x + y, grid.denominators(rho))

    def lr(r: float, null: float) -> float:
        out = 1.0
        for x, y, rho in batches:
            t, t0 = theta(r, rho), theta(null, rho)
            out *= (t / t0) ** x * ((1 - t) / (1 - t0)) ** y
        return out

    worse = sum(lr(r, 1.1) for r in (1.5, 3.0, 10.0)) / 3
    assert ev.log_e_worse() == pytest.approx(math.log(worse), rel=1e-9)
    better = sum(lr(r, 2.0) for r in (0.5, 1.0)) / 2
    assert ev.log_e_not_worse() == pytest.approx(math.log(better), rel=1e-9)


@pytest.mark.parametrize("rho", [0.05, 0.3, 0.9])
def test_each_factor_is_fair_at_the_null_and_loses_below_it(rho: float) -> None:
    """E[factor] = 1 under r = m and < 1 under r < m: the supermartingale the bound needs."""
    m, k = 1.1, 7
    for alt in (1.25, 3.0, 50.0):
        t_alt, t0 = theta(alt, rho), theta(m, rho)

        def expected(r: float, t_alt: float = t_alt, t0: float = t0) -> float:
            t = theta(r, rho)
            return sum(
                _binom_pmf(x, k, t) * (t_alt / t0) ** x * ((1 - t_alt) / (1 - t0)) ** (k - x)
                for x in range(k + 1)
            )

        assert expected(m) == pytest.approx(1.0, rel=1e-12)
        assert expected(1.0) < 1.0 and expected(0.5) < expected(1.0)


def test_below_limit_bets_are_fair_at_the_limit() -> None:
    """Each fraction's factor has expectation 1 at p = L and below 1 above it."""
    limit, n = 0.05, 12
    for above in (False, True):
        test = BelowLimit(above=above)
        test.add(0, 0, limit)  # fills the terms for this limit; no trial, no change
        assert test.la == [0.0] * len(test.fractions)
        for t1, t2 in test._terms:

            def expected(p: float, t1: float = t1, t2: float = t2) -> float:
                return sum(
                    _binom_pmf(x, n, p) * math.exp(x * t1 + (n - x) * t2) for x in range(n + 1)
                )

            assert expected(limit) == pytest.approx(1.0, rel=1e-9)
            assert expected(0.08 if not above else 0.03) < 1.0


def test_stitched_lower_bound_moves_only_at_doublings() -> None:
    b = StitchedLowerBound(0.01)
    assert b.update(0, 10) == 0.0
    first = b.update(8, 16)
    assert 0.0 < first < 0.5
    assert b.update(19, 20) == first  # held until 32 trials
    assert first < b.update(500, 1000) < 0.5


# -- verdicts ---------------------------------------------------------------------------
def _arm(n: int, e: int = 0, slow: tuple[int, ...] = (0, 0, 0), timeouts: int = 0) -> ArmCounts:
    return ArmCounts(n, e, slow, timeouts)


@pytest.mark.parametrize(
    ("canary", "field"),
    [
        (ArmCounts(-1, 0, (0, 0, 0)), "requests is negative"),
        (ArmCounts(10, 11, (0, 0, 0)), "errors (11) exceed requests (10)"),
        (ArmCounts(10, math.nan, (0, 0, 0)), "errors is nan"),  # type: ignore[arg-type]
        (ArmCounts(10, 1.5, (0, 0, 0)), "errors is 1.5"),  # type: ignore[arg-type]
        (ArmCounts(10, True, (0, 0, 0)), "errors is bool"),  # type: ignore[arg-type]
        (ArmCounts(10, 0, (0, 0)), "2 slow counts for 3 thresholds"),
        (ArmCounts(10, 0, (1, 2, 0)), "slow[1] (2) exceeds slow[0]"),
        (ArmCounts(10, 0, (8, 0, 0), 3), "slow[0] + timeouts (8 + 3) exceed requests"),
        (ArmCounts(10, 0, ("1", 0, 0)), "slow[0] is str"),  # type: ignore[arg-type]
    ],
)
def test_broken_counts_are_an_error_naming_the_field_and_teach_nothing(
    canary: ArmCounts, field: str
) -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    judge.observe(_arm(100, 1, (50, 10, 1)), _arm(900, 9, (450, 90, 9)))
    before = judge.judgement().evidence.to_dict()
    j = judge.observe(canary, _arm(900, 9, (450, 90, 9)))
    assert j.verdict is JudgeVerdict.ERROR and j.code is ReasonCode.BROKEN_MEASUREMENT
    assert field in j.reason and "canary" in j.reason
    assert not j.passed and not j.failed
    assert judge.judgement().evidence.to_dict() == before
    j = judge.observe(_arm(100), ArmCounts(5, 6, (0, 0, 0)))
    assert j.verdict is JudgeVerdict.ERROR and "stable errors (6) exceed requests (5)" in j.reason


def test_whole_float_counts_are_accepted() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    j = judge.observe(ArmCounts(100.0, 1.0, (50.0, 10.0, 1.0)), _arm(900, 9, (450, 90, 9)))  # type: ignore[arg-type]
    assert j.verdict is JudgeVerdict.INCONCLUSIVE
    assert j.evidence.canary.requests == 100 and isinstance(j.evidence.canary.requests, int)


def test_one_arm_serving_everything_teaches_the_split_nothing() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    start = judge.judgement().evidence
    # rho = 0: every error is the stable's whatever the ratio; rho = 1: every one the canary's.
    judge.observe(_arm(0), _arm(100, 50, (60, 30, 10)))
    judge.observe(_arm(100, 50, (60, 30, 10)), _arm(0))
    ev = judge.judgement().evidence
    assert ev.e_errors == start.e_errors == 1.0
    assert ev.e_latency_per_threshold == start.e_latency_per_threshold
    assert ev.error_ratio_low == 0.0 and math.isinf(ev.error_ratio_high)


def test_zero_traffic_in_a_window_is_its_own_reason() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    j = judge.observe(_arm(0), _arm(500, 1, (250, 50, 5)))
    assert j.verdict is JudgeVerdict.INCONCLUSIVE and j.code is ReasonCode.NO_TRAFFIC
    assert "no user request reached the new version" in j.reason
    assert "health probes" in j.reason
    j = judge.observe(_arm(5), _arm(500, 1, (250, 50, 5)))
    assert j.code is ReasonCode.GATHERING
    judge.start_window()
    j = judge.observe(_arm(0), _arm(500, 1, (250, 50, 5)))
    assert j.code is ReasonCode.NO_TRAFFIC
    assert j.evidence.canary.requests == 5 and j.evidence.window_canary_requests == 0


def test_a_much_worse_canary_is_aborted_with_an_interval_that_excludes_one() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    j = judge.judgement()
    looks = 0
    while not j.failed:
        looks += 1
        assert looks < 30 and not j.passed
        # 10 % of traffic, 5 % errors, against 0.2 % on the stable.
        j = judge.observe(_arm(100, 5, (50, 10, 1)), _arm(900, 2, (450, 90, 9)))
    assert j.code is ReasonCode.WORSE_ERRORS
    ev = j.evidence
    assert ev.error_ratio_low > 1.1 and ev.error_ratio_low <= 25.0 <= ev.error_ratio_high
    assert ev.p_value <= judge.config.alpha
    assert "canary error rate" in j.reason and "the stable's (99 %)" in j.reason
    assert f"canary {ev.canary.errors}/{ev.canary.requests}" in j.reason


def test_a_tail_regression_is_aborted_on_latency() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    j = judge.judgement()
    for _ in range(60):
        # Same median and p90 share, 8 % above the stable's p99 instead of 1 %.
        j = judge.observe(_arm(200, 0, (100, 20, 16)), _arm(800, 0, (400, 80, 8)))
        if j.failed:
            break
    assert j.failed and j.code is ReasonCode.WORSE_LATENCY
    assert "above 900 ms" in j.reason
    per = j.evidence.e_latency_per_threshold
    assert per[2] == max(per)


def test_timeouts_are_slow_for_every_threshold() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    for _ in range(40):
        j = judge.observe(_arm(100, 0, (50, 10, 1), timeouts=10), _arm(900, 0, (450, 90, 9)))
        if j.failed:
            break
    assert j.failed and j.code is ReasonCode.WORSE_LATENCY
    assert j.evidence.canary.timeouts > 0
    assert min(j.evidence.e_latency_per_threshold) > 1.0  # every threshold saw them


def test_a_healthy_canary_with_traffic_is_promoted() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    j = judge.judgement()
    looks = 0
    while not j.passed:
        looks += 1
        assert looks < 100 and not j.failed
        j = judge.observe(_arm(100, 1, (50, 10, 1)), _arm(900, 9, (450, 90, 9)))
    assert j.code is ReasonCode.SAFE and "evidence of safety" in j.reason
    ev = j.evidence
    assert ev.missing == () and ev.needed_requests is None
    assert ev.error_ratio_low < 1.0 < ev.error_ratio_high


def test_gathering_says_what_is_missing_and_how_much_more_it_needs() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    j = judge.observe(_arm(20, 0, (10, 2, 0)), _arm(180, 2, (90, 18, 2)))
    assert j.code is ReasonCode.GATHERING
    assert (
        "errors" in j.evidence.missing
        and "latency above 900 ms (canary: above 902 ms)" in j.evidence.missing
    )
    needed = j.evidence.needed_requests
    assert needed is not None and 20 < needed < 10_000
    assert f"about {math.ceil(needed)} more canary requests" in j.reason
    # A canary above its error limit can never show it is below: no finite estimate.
    bad = CanaryJudge(thresholds_ms=TH)
    j = bad.observe(_arm(100, 0, (50, 10, 1)), _arm(900, 900 * 0, (450, 90, 9)))
    j = bad.observe(_arm(100, 30, (50, 10, 1)), _arm(0))
    assert j.code is ReasonCode.GATHERING
    assert j.evidence.needed_requests == math.inf
    assert "not while its rates stay as they are" in j.reason


def test_twenty_times_worse_but_under_the_absolute_limit_is_never_promoted() -> None:
    """The race: 2 % against 0.1 %, limit 5 %, expected counts at 200 req/s, 10 % canary."""
    judge = CanaryJudge(JudgeConfig(max_error_rate=0.05), thresholds_ms=TH)
    verdicts = []
    for second in range(600):
        canary_errors = 1 if second % 5 < 2 else 0  # 0.4 errors/s: 2 % of 20 req/s
        stable_errors = 1 if second % 6 == 0 else 0  # ~0.17/s: 0.1 % of 180 req/s
        j = judge.observe(
            _arm(20, canary_errors, (10, 2, 0)), _arm(180, stable_errors, (90, 18, 2))
        )
        verdicts.append(j.verdict)
        if j.failed:
            break
    assert JudgeVerdict.PASSED not in verdicts
    assert verdicts[-1] is JudgeVerdict.FAILED and len(verdicts) < 60


def test_evidence_carries_across_windows() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    for _ in range(5):
        judge.observe(_arm(100, 3, (50, 10, 1)), _arm(900, 2, (450, 90, 9)))
    e = judge.judgement().evidence.e_errors
    judge.start_window()
    assert judge.judgement().evidence.e_errors == e > 1.0
    j = judge.observe(_arm(250, 8, (125, 25, 2)), _arm(750, 2, (375, 75, 7)))
    assert j.evidence.e_errors > e


def test_a_judgement_keeps_the_evidence_of_its_look() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    first = judge.observe(_arm(100, 1, (50, 10, 1)), _arm(900, 9, (450, 90, 9)))
    for _ in range(20):
        judge.observe(_arm(100, 4, (60, 20, 5)), _arm(900, 9, (450, 90, 9)))
    ev = first.evidence
    assert ev.canary.requests == 100 and ev.stable.errors == 9
    assert ev.e_errors < judge.judgement().evidence.e_errors


def test_evidence_is_json_with_stable_field_names() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    for _ in range(3):
        j = judge.observe(_arm(100, 9, (50, 10, 1), 1), _arm(900, 1, (450, 90, 9)))
    d = j.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d) == {"verdict", "reason", "code", "evidence"}
    assert set(d["evidence"]) == {
        "mode",
        "canary",
        "stable",
        "reference",
        "window_canary_requests",
        "thresholds_ms",
        "canary_thresholds_ms",
        "e_values",
        "p_value",
        "error_ratio",
        "limits",
        "needed_requests",
        "missing",
    }
    assert set(d["evidence"]["e_values"]) == {
        "errors",
        "latency",
        "latency_per_threshold",
        "errors_not_worse",
        "errors_below_limit",
        "latency_below_limit",
    }
    assert set(d["evidence"]["error_ratio"]) == {"low", "high", "estimate", "level", "text"}
    assert d["evidence"]["canary"] == {
        "requests": 300,
        "errors": 27,
        "slow": [150, 30, 3],
        "timeouts": 3,
    }


# -- one-sample and no-baseline -------------------------------------------------------------
def test_one_sample_looks_use_the_stable_figures_measured_before() -> None:
    judge = CanaryJudge(thresholds_ms=TH)
    for _ in range(30):
        judge.observe(_arm(100, 1, (50, 10, 1)), _arm(900, 9, (450, 90, 9)))
    j = judge.observe(_arm(1000, 10, (500, 100, 10)))
    ev = j.evidence
    assert ev.mode == "one-sample" and ev.reference == ArmCounts(27000, 270, (13500, 2700, 270))
    assert "one-sample" in j.reason
    for _ in range(30):
        j = judge.observe(_arm(1000, 60, (500, 100, 10)))  # 6 x the reference's rate
        if j.failed:
            break
    assert j.failed and j.code is ReasonCode.WORSE_ERRORS
    # One ratio for the whole run: 1 for 30 looks, then 6, read as about 2, and not 1.
    assert j.evidence.error_ratio_low >= 1.1


def test_a_reference_given_up_front_serves_the_guard() -> None:
    ref = ArmCounts(50_000, 50, (25_000, 5_000, 500))
    judge = CanaryJudge(thresholds_ms=TH, reference=ref)
    j = judge.judgement()
    for _ in range(60):
        j = judge.observe(_arm(200, 0, (100, 20, 2)))
        if j.passed:
            break
    assert j.passed and j.evidence.mode == "one-sample" and j.evidence.reference == ref
    with pytest.raises(ConfigError, match="reference"):
        CanaryJudge(thresholds_ms=TH, reference=ArmCounts(0, 0, (0, 0, 0)))
    with pytest.raises(ConfigError, match="reference: errors"):
        CanaryJudge(thresholds_ms=TH, reference=ArmCounts(5, 9, (0, 0, 0)))


def test_without_any_baseline_the_absolute_limit_judges_both_ways() -> None:
    judge = CanaryJudge(JudgeConfig(max_error_rate=0.05), thresholds_ms=TH)
    for _ in range(20):
        j = judge.observe(_arm(50, 15, (25, 5, 1)))
        if j.failed:
            break
    assert j.failed and "no baseline" in j.reason and "above 5.00%" in j.reason
    good = CanaryJudge(JudgeConfig(max_error_rate=0.05), thresholds_ms=TH)
    for _ in range(40):
        j = good.observe(_arm(50, 0, (25, 5, 1)))
        if j.passed:
            break
    assert j.passed and "no baseline" in j.reason


# -- configuration and latency helpers ---------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"beta": 1.5}, "beta"),
        ({"margin": 0.9}, "margin"),
        ({"max_ratio": 1.05}, "max_ratio"),
        ({"worse_ratios": (1.0, 2.0)}, "worse_ratios"),
        ({"better_ratios": (3.0,)}, "better_ratios"),
        ({"limit_floor": math.nan}, "limit_floor"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        JudgeConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_thresholds_must_increase() -> None:
    with pytest.raises(ConfigError, match="thresholds_ms"):
        CanaryJudge(thresholds_ms=[200.0, 100.0])
    with pytest.raises(ConfigError, match="thresholds_ms"):
        CanaryJudge(thresholds_ms=[0.0])


def test_abort_and_promotion_levels_add_up() -> None:
    cfg = JudgeConfig()
    for family in ("errors", "latency"):
        a = math.exp(-cfg.abort_log_threshold(family)) + cfg.abort_reference_delta(family)
        assert a == pytest.approx(cfg.alpha / 2)
    promote = 2 * math.exp(-cfg.errors_safe_log_threshold) + cfg.errors_safe_delta
    assert promote == pytest.approx(cfg.beta)


def test_freeze_thresholds_and_count_slow() -> None:
    samples = [float(i) for i in range(1, 201)]
    assert freeze_thresholds(samples) == (100.0, 180.0, 198.0)
    assert freeze_thresholds([5.0] * 100 + [7.0] * 100) == (5.0, 7.0)  # merged duplicates
    with pytest.raises(ConfigError, match="at least 100"):
        freeze_thresholds(samples[:50])
    assert count_slow([50.0, 150.0, 190.0, 199.0, 500.0], (100.0, 180.0, 198.0)) == (4, 3, 2)


def test_the_latency_bet_never_uses_the_batch_it_bets_on() -> None:
    slow = SlowEvidence(2, 1.1)
    # First batch: no history, the bet sits at the null (factor 1) whatever the batch says.
    slow.add_split(([9, 5], 10), ([1, 0], 90), 0.1, ([0, 0], 0), ([0, 0], 0))
    assert slow.log_slower == [0.0, 0.0]
    # Second batch: the bet is the first batch's ratio; the same data now counts.
    slow.add_split(([9, 5], 10), ([1, 0], 90), 0.1, ([9, 5], 10), ([1, 0], 90))
    assert slow.log_slower[0] > 0.0 and slow.log_slower[1] > 0.0


def test_limits_are_rounded_down_to_one_percent_steps() -> None:
    cfg = JudgeConfig()
    (limit,) = cfg.latency_limits([0.01])
    assert 0.04 * math.exp(-0.01) < limit <= 0.04
    assert cfg.latency_limits([0.01005], [limit]) == [limit]  # within its step: kept
    assert cfg.latency_limits([0.3]) == [1.0]  # 4 x 30 %: nothing to show
    assert cfg.error_limit(0.0001) == pytest.approx(cfg.limit_floor, rel=0.011)
    assert cfg.error_limit(None) == cfg.max_error_rate


def test_any_valid_count_sequence_gives_a_verdict_and_plain_json() -> None:
    rng = random.Random(2024)
    for case in range(150):
        judge = CanaryJudge(thresholds_ms=TH, reference=None if case % 3 else _arm(5000, 5))
        for _ in range(rng.randint(1, 25)):

            def arm(n: int) -> ArmCounts:
                timeouts = rng.randint(0, n // 4) if n else 0
                left = n - timeouts
                slow = []
                for _ in TH:
                    left = rng.randint(0, left)
                    slow.append(left)
                return ArmCounts(n, rng.randint(0, n), tuple(slow), timeouts)

            canary = arm(rng.choice([0, 1, 5, 50, 500]))
            stable = None if rng.random() < 0.3 else arm(rng.choice([0, 3, 100, 2000]))
            j = judge.observe(canary, stable)
            assert j.verdict is not JudgeVerdict.ERROR, j.reason
            if rng.random() < 0.2:
                judge.start_window()
        d = j.to_dict()
        json.dumps(d, allow_nan=False)
        ev = j.evidence
        assert 0.0 <= ev.p_value <= 1.0
        assert ev.error_ratio_low <= ev.error_ratio_high
        assert j.reason
