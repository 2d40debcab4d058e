"""Seeded synthetic rollouts for the judge: the harness of its proof and its benchmark.

Pure and stdlib-only (``random``, ``math``, ``statistics``), so the suite can run
thousands of rollouts in seconds on the real :class:`~.judge.CanaryJudge`, and a notebook
can try a configuration before a real rollout does.

Traffic model, per one-second look: ``rate`` requests (an integer rate, or a Poisson-free
fractional rate rounded per second by a Bernoulli draw), each routed to the canary with
probability ``weight`` (so the canary's share varies from look to look, as with several
nginx workers); each arm's errors are Binomial(requests, its error rate); latencies are
log-normal (stable: median ``median_ms``, log-sd ``sigma``), counted in bins between
latency edges (one multinomial draw per arm and look): by default the stable's p50, p90
and p99 (:data:`JUDGE_QUANTILES`), the judge's thresholds; a finer set of edges holding
them lets a fixed-threshold judge read percentiles from the same draws. The judge's rule
for latency is the real one: the stable's requests count as slow above its thresholds, the
canary's above each threshold plus its latency margin (:meth:`Scenario.judge_edges` holds
both). Rollout model, as ``RolloutContext.observe`` runs it:
weight steps (default [10, 25, 50, 100]), each baked ``bake_seconds`` with a look every
second; a step passes at the end of its bake when the judge passes it, else it holds up
to ``analysis_timeout`` more and then fails closed; an abort ends the rollout at once. The
100 % step has no concurrent stable: one-sample looks against the stable's totals so far.
A window in which no request reached the canary is passed on health probes (healthy
here), as the judge's ``no_traffic`` answer asks.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

from crackseg.utils.deployment.rollout.judge.config import JudgeConfig
from crackseg.utils.deployment.rollout.judge.evidence import ArmCounts, JudgeVerdict, ReasonCode
from crackseg.utils.deployment.rollout.judge.judge import CanaryJudge

__all__ = [
    "JUDGE_QUANTILES",
    "Look",
    "Outcome",
    "Scenario",
    "binomial",
    "looks",
    "simulate_rollout",
    "step_rng",
]

# The judge's thresholds: the stable's p50, p90, p99.
JUDGE_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)
_Z = NormalDist()


def binomial(n: int, p: float, rng: random.Random) -> int:
    """One Binomial(n, p) draw: inversion for small means, Hormann's BTRS otherwise.

    W. Hormann, "The generation of binomial random variates", J. Statist. Comput.
    Simul. 46, 1993 (the transformed rejection method with squeeze, BTRS).
    """
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(n, 1.0 - p, rng)
    if n * p < 10.0:
        # Inversion, walking the probability mass function from 0.
        q = 1.0 - p
        s = p / q
        a = (n + 1) * s
        while True:
            r = q**n
            u = rng.random()
            x = 0
            while u > r:
                u -= r
                x += 1
                if x > n:
                    break
                r *= a / x - s
            if x <= n:
                return x
    spq = math.sqrt(n * p * (1.0 - p))
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    vr = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    lpq = math.log(p / (1.0 - p))
    m = math.floor((n + 1) * p)
    h = math.lgamma(m + 1) + math.lgamma(n - m + 1)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + c)
        if k < 0 or k > n:
            continue
        if us >= 0.07 and v <= vr:
            return k
        v = math.log(v * alpha / (a / (us * us) + b))
        if v <= h - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - m) * lpq:
            return k


@dataclass(frozen=True)
class Scenario:
    """One kind of rollout: traffic, and how the canary differs from its stable.

    ``canary_median_factor`` scales the canary's latencies throughout (2.5: "2.5x slower");
    ``canary_p99_factor`` stretches its tail around an unchanged median (2.0: "p99 x 2").
    """

    name: str
    rate: float
    stable_error_rate: float
    canary_error_rate: float
    canary_median_factor: float = 1.0
    canary_p99_factor: float = 1.0
    sigma: float = 0.5
    median_ms: float = 100.0

    def thresholds_ms(self, quantiles: Sequence[float] = JUDGE_QUANTILES) -> tuple[float, ...]:
        """The stable's latency at each of ``quantiles``."""
        return tuple(self.median_ms * math.exp(self.sigma * _Z.inv_cdf(q)) for q in quantiles)

    def judge_edges(
        self, config: JudgeConfig | None = None
    ) -> tuple[tuple[float, ...], tuple[int, ...], tuple[int, ...]]:
        """Bin edges (ms, ascending) holding the judge's thresholds and the canary's shifted
        ones (``config``'s latency margin), with the indices of each among them: ``(edges,
        stable, canary)``."""
        th = self.thresholds_ms()
        shifted = (config or JudgeConfig()).canary_thresholds(th)
        edges = tuple(sorted({*th, *shifted}))
        return edges, tuple(edges.index(t) for t in th), tuple(edges.index(t) for t in shifted)

    def bin_probabilities(
        self, canary: bool, edges_ms: Sequence[float] | None = None
    ) -> tuple[float, ...]:
        """P(a request falls in each bin between ``edges_ms`` (default: the judge's
        thresholds)), ``len(edges_ms) + 1`` bins."""
        edges = self.thresholds_ms() if edges_ms is None else edges_ms
        # log-normal: log t = log(median * factor) + sigma' Z, with sigma' stretched so
        # that the p99 is p99_factor times the stable's around the same median.
        sig, mu = self.sigma, math.log(self.median_ms)
        if canary:
            sig += math.log(self.canary_p99_factor) / _Z.inv_cdf(0.99)
            mu += math.log(self.canary_median_factor)
        qs = (0.0, *(_Z.cdf((math.log(e) - mu) / sig) for e in edges), 1.0)
        return tuple(max(b - a, 0.0) for a, b in itertools.pairwise(qs))


@dataclass(frozen=True)
class Look:
    """One second of traffic: per arm, requests, errors, and requests per latency bin."""

    canary_requests: int
    canary_errors: int
    canary_bins: tuple[int, ...]
    stable_requests: int
    stable_errors: int
    stable_bins: tuple[int, ...]

    def judge_counts(self, canary: bool, edges: Sequence[int] = (0, 1, 2)) -> ArmCounts:
        """The arm's counts as the judge takes them: slow above the bin edges ``edges``
        (indices into the edges the looks were drawn with; default: the three judge
        thresholds)."""
        bins = self.canary_bins if canary else self.stable_bins
        n, e = (
            (self.canary_requests, self.canary_errors)
            if canary
            else (self.stable_requests, self.stable_errors)
        )
        return ArmCounts(n, e, tuple(sum(bins[i + 1 :]) for i in edges))


def _multinomial(n: int, probs: Sequence[float], rng: random.Random) -> tuple[int, ...]:
    out = []
    left, mass = n, 1.0
    for p in probs[:-1]:
        k = binomial(left, min(1.0, p / mass), rng) if left and mass > 0 else 0
        out.append(k)
        left -= k
        mass -= p
    out.append(left)
    return tuple(out)


def looks(
    scenario: Scenario,
    weight: float,
    rng: random.Random,
    edges_ms: Sequence[float] | None = None,
) -> Iterator[Look]:
    """Endless one-second looks of ``scenario`` with ``weight`` (0..1) on the canary,
    latencies binned at ``edges_ms`` (default: the judge's thresholds)."""
    whole, frac = divmod(scenario.rate, 1.0)
    pc = scenario.bin_probabilities(True, edges_ms)
    ps = scenario.bin_probabilities(False, edges_ms)
    while True:
        n = int(whole) + (1 if frac and rng.random() < frac else 0)
        n_c = binomial(n, weight, rng)
        n_s = n - n_c
        yield Look(
            n_c,
            binomial(n_c, scenario.canary_error_rate, rng),
            _multinomial(n_c, pc, rng),
            n_s,
            binomial(n_s, scenario.stable_error_rate, rng),
            _multinomial(n_s, ps, rng),
        )


def step_rng(seed: int, step: int) -> random.Random:
    """The random stream of one step of one seeded rollout."""
    return random.Random(seed * 1009 + step)


@dataclass
class Outcome:
    """How one simulated rollout ended: ``promoted``, ``aborted`` (evidence of harm) or
    ``inconclusive`` (failed closed at a step's timeout), when, and what it cost."""

    result: str
    seconds: float
    step: int
    canary_requests: int = 0
    canary_errors: int = 0
    canary_slow: int = 0  # canary requests above the stable's p99
    reasons: list[str] = field(default_factory=list)


def simulate_rollout(
    scenario: Scenario,
    seed: int,
    *,
    config: JudgeConfig | None = None,
    steps: Sequence[int] = (10, 25, 50, 100),
    bake_seconds: int = 30,
    analysis_timeout: int = 30,
    latency: bool = True,
    traffic: Callable[[int, float], Iterator[Look]] | None = None,
    edges: Sequence[int] = (0, 1, 2),
    canary_edges: Sequence[int] | None = None,
) -> Outcome:
    """One rollout of ``scenario`` judged by a fresh :class:`CanaryJudge`, seeded.

    Each step draws from its own stream (:func:`step_rng`), so another judge driven on
    the same seed sees the same traffic at every step whatever it decided before.
    ``latency=False`` judges errors only (no thresholds), to isolate the errors' race.
    ``traffic(step, weight)`` replaces the default streams (e.g. looks binned finer and
    shared with another judge); ``edges`` are then the indices of the judge's thresholds
    among its bin edges, ``canary_edges`` those of the canary's shifted thresholds
    (:meth:`Scenario.judge_edges`; default ``edges``: no latency margin).
    """
    cfg = config or JudgeConfig()
    th = scenario.thresholds_ms() if latency else ()
    edges_ms: tuple[float, ...] | None = None
    if traffic is None:
        edges_ms, edges, canary_edges = scenario.judge_edges(cfg)
    shifted = canary_edges is not None and tuple(canary_edges) != tuple(edges)
    c_edges = edges if canary_edges is None else canary_edges
    p99_edge = edges[-1] if edges else 2  # bad-latency requests: above the stable's p99
    if not latency:
        edges = c_edges = ()
    judge = CanaryJudge(
        cfg, thresholds_ms=th, canary_thresholds_ms=cfg.canary_thresholds(th) if shifted else th
    )
    out = Outcome("promoted", 0.0, 0)
    t = 0
    for step, weight in enumerate(steps):
        judge.start_window()
        out.step = step
        stream = (
            traffic(step, weight / 100.0)
            if traffic is not None
            else looks(scenario, weight / 100.0, step_rng(seed, step), edges_ms)
        )
        passed = False
        for second in range(1, bake_seconds + analysis_timeout + 1):
            look = next(stream)
            t += 1
            canary = look.judge_counts(True, c_edges)
            out.canary_requests += canary.requests
            out.canary_errors += canary.errors
            out.canary_slow += sum(look.canary_bins[p99_edge + 1 :])
            if weight < 100:
                j = judge.observe(canary, look.judge_counts(False, edges))
            else:
                j = judge.observe(canary)
            if j.verdict is JudgeVerdict.FAILED:
                out.result, out.seconds = "aborted", float(t)
                return out
            if second >= bake_seconds and (
                j.verdict is JudgeVerdict.PASSED or j.code is ReasonCode.NO_TRAFFIC
            ):
                passed = True
                break
        if not passed:
            out.result, out.seconds = "inconclusive", float(t)
            return out
    out.seconds = float(t)
    return out
