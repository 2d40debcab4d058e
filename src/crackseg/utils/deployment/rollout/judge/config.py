"""What the canary judge promises, in numbers (:class:`JudgeConfig`).

The two bounds the judge keeps, at any traffic and however often it looks:

* **False rollbacks** <= ``alpha``: a canary whose error rate and whose share of slow
  requests (above each threshold) are at most ``margin`` x the stable's is aborted with
  probability at most ``alpha``. Half of ``alpha`` goes to errors, half to latency
  (``error_share``): a union bound over the two families.
* **Bad promotions** <= ``beta``: a canary is promoted only on evidence of safety, and the
  evidence is an intersection-union test (every part must be shown, so no part needs a
  correction): its errors (below) *and*, for each latency threshold, its share of
  requests above it below ``latency_max_ratio`` x the stable's share (or ``limit_floor``
  if higher; a threshold where that reaches 100 %, e.g. the median with a ratio of 4, has
  nothing to show).

Within each level a ``reference_delta_share`` (10 %) pays for the stable's figures being
measured, not known: a reference frozen before a one-sample look (upper bounds for the
abort side, lower bounds for the promotion side) and the lower bound the error limit is
taken from; the e-processes get the other 90 %. So the bounds hold in every mode.

**The race** of the design note (a canary at 2 % errors against a stable at 0.1 %, limit
5 %, can show "below 5 %" as fast as the comparison shows "20 x worse") is settled by the
limit the errors are held to: **the absolute limit is never more than ``limit_ratio`` x
a lower confidence bound of the stable's rate** (a stitched bound, valid at every look
at once), nor less than ``limit_floor``::

    L = min(max_error_rate, max(limit_ratio * p_stable_low, limit_floor))

Errors are shown safe by either of two tests at ``beta / 2`` each: the canary's rate is
below ``max_ratio`` x the stable's (the reversed split test), or its own rate is below
``L``. A canary is "bad" when it fails both: a rate at least ``max_ratio`` x the stable's
and at least ``min(max_error_rate, max(limit_ratio * p_stable, limit_floor))``. Every
canary ``limit_ratio`` x worse than its stable and above the floor is bad (the 20 x canary
above: 2 % against ``L <= 1 %``), and is promoted with probability at most ``beta``. The
other option of the note (promote on the absolute test only once the split test "has had
the traffic to see a given ratio") needs the same stable rate to say how much traffic
that is, and states its promise less plainly.

Departure, for latency: its limits are ``latency_max_ratio`` x the stable's *measured*
shares above each threshold, not lower bounds of them (the thresholds are the stable's
own quantiles, so the shares are known up to sampling noise; a lower bound of a 1 % share
costs a healthy canary twice the traffic). The promise there is relative to the shares
measured; the simulation shows the tail regressions it must stop are stopped.

**A latency margin, in time.** The thresholds ``t_k`` are the stable's quantiles; for a
fast service they are a millisecond or two, the resolution of nginx's ``$request_time``,
and a machine-wide shift of a millisecond between the stable's figures measured before
and the canary's bake (one-sample looks) is then "twice as slow", though no user would
notice. Errors have ``margin``; latency gets the same idea in time: the canary's requests
count as slow above ``t_k + d_k``, the stable's (and the frozen one-sample reference's)
above ``t_k``, with::

    d_k = max(latency_margin_ms, latency_margin_ratio * t_k)

(:meth:`JudgeConfig.canary_thresholds`). The null becomes "the canary's latency is at
most the stable's plus ``d`` (stochastically)": ``T_c <=st T_s + d_k``. Then
``P(T_c > t_k + d_k) <= P(T_s + d_k > t_k + d_k) = P(T_s > t_k)``, so the canary's share
of "slow" requests is at most the stable's and the split tests' null (ratio <= ``margin``,
``margin >= 1``) holds at every threshold: the abort bound ``alpha`` holds exactly as
before, in both modes (the reference's shares are bounded the same way). For the
promotion bound ``beta``, a "bad" canary is now one whose share above ``t_k + d_k`` is at
least ``latency_max_ratio`` x the stable's share above ``t_k``: a canary a few
milliseconds slower throughout is not bad, a tail ten times longer still is.
Where the counts come from histogram buckets the canary is counted above the smallest
bucket bound ``>= t_k + d_k`` (more lenient still, so the null holds); a threshold whose
shifted bound is past the last finite bucket counts no canary request as slow, and the
baseline's note says the histogram cannot resolve it.

Defaults, and why:

* ``margin = 1.1``: a canary 10 % worse than its stable is not worth a rollback; the
  margin also covers the binomial approximation of the split at error rates of a few
  percent (see :mod:`.evalues`), so an A/A canary sits well inside the null.
* ``alpha = 0.01``, ``beta = 0.05``: a false rollback costs a re-run; a bad promotion
  costs users, and is caught again by the next step and the guard.
* ``max_ratio = 2``, ``limit_ratio = 10``, ``limit_floor = 1 %``: with rare errors only
  the absolute test is fast (showing "below 1 %" takes ~600 requests of a canary at 0.1 %;
  "below 2 x 0.1 %" takes ~10,000). The floor is what a canary is never held under
  relative to its stable: at 0.1 % a lower bound of the stable's rate puts ``L`` at the
  floor, and a floor of 0.5 % halved the healthy canaries promoted at 200 req/s.
* ``latency_max_ratio = 4``: showing a share above the stable's p99 below 4 % takes
  ~200 requests of a canary at 1 %; below 3 % ~350, below 2 % ~1,000. A p99 doubled
  around the same median puts 7 % of the canary's requests above the stable's p99.
* ``latency_margin_ms = 2``, ``latency_margin_ratio = 0``: two resolutions of nginx's
  ``$request_time`` (1 ms) and a machine's scheduling jitter under load. No relative
  margin by default, because a tail is steep: with 10 % the canary whose slowest 3 % take
  ten times longer put ~3.4 % of its requests above the stable's p99 + 10 % (under
  ``latency_max_ratio`` x 1 %, so outside the promotion bound) and was promoted in 6 of
  40 simulated two-sample rollouts, against 1 of 40 with 2 ms alone (tests/rollout/
  test_judge_margin.py); a service whose latency wanders by a share may set it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from crackseg.utils.deployment.errors import ConfigProblems

__all__ = ["JudgeConfig"]


@dataclass(frozen=True)
class JudgeConfig:
    """The judge's levels and limits; fractions, not percentages (0.05 is 5 %).

    >>> JudgeConfig(max_error_rate=0.05).abort_log_threshold("errors") > 0
    True
    """

    alpha: float = 0.01
    beta: float = 0.05
    error_share: float = 0.5
    margin: float = 1.1
    max_ratio: float = 2.0
    max_error_rate: float = 0.05
    limit_ratio: float = 10.0
    limit_floor: float = 0.01
    latency_max_ratio: float = 4.0
    latency_margin_ms: float = 2.0
    latency_margin_ratio: float = 0.0
    worse_ratios: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
    better_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    reference_delta_share: float = 0.1

    def __post_init__(self) -> None:
        found = ConfigProblems()  # every problem in one error
        for name in ("alpha", "beta", "error_share", "max_error_rate", "limit_floor"):
            value = getattr(self, name)
            if not _number(value) or not 0.0 < value < 1.0:
                found.add(name, f"must be a fraction strictly between 0 and 1, got {value!r}")
        if not _number(self.reference_delta_share) or not 0.0 < self.reference_delta_share <= 1:
            found.add("reference_delta_share", "must be in (0, 1], e.g. 0.1")
        if not _number(self.latency_margin_ms) or self.latency_margin_ms < 0:
            found.add(
                "latency_margin_ms",
                f"must be a time >= 0 in ms, e.g. 2, got {self.latency_margin_ms!r}",
            )
        if not _number(self.latency_margin_ratio) or not 0 <= self.latency_margin_ratio < 1:
            found.add(
                "latency_margin_ratio",
                f"must be a fraction in [0, 1), e.g. 0.1, got {self.latency_margin_ratio!r}",
            )
        ratios = True
        for name in ("margin", "max_ratio", "limit_ratio", "latency_max_ratio"):
            value = getattr(self, name)
            if not _number(value) or value < 1.0:
                found.add(name, f"must be a ratio >= 1, got {value!r}")
                ratios = ratios and name not in ("margin", "max_ratio")
        if ratios:  # the checks below compare with margin and max_ratio: both valid
            self._validate_ratio_lists(found)
        found.raise_any()

    def _validate_ratio_lists(self, found: ConfigProblems) -> None:
        if self.max_ratio <= self.margin:
            found.add("max_ratio", f"must exceed margin ({self.margin}), e.g. 2")
        if not self.worse_ratios or any(
            not _number(r) or r <= self.margin for r in self.worse_ratios
        ):
            found.add("worse_ratios", f"give ratios above margin ({self.margin})")
        if not self.better_ratios or any(
            not _number(r) or not 0 < r < self.max_ratio for r in self.better_ratios
        ):
            found.add("better_ratios", f"give ratios in (0, max_ratio={self.max_ratio})")

    # -- the budgets ------------------------------------------------------------------
    # Every level a is split: a * (1 - reference_delta_share) for the e-process, the rest
    # (delta) for the stable's figures being off (a reference measured before, or the
    # lower bound a limit is taken from), so that the stated bound holds in every mode.
    def _share(self, family: str) -> float:
        return self.error_share if family == "errors" else 1.0 - self.error_share

    def abort_log_threshold(self, family: str) -> float:
        """log(1/a) for the e-process of a family ("errors" or "latency") to abort on."""
        a = self.alpha * self._share(family) * (1.0 - self.reference_delta_share)
        return math.log(1.0 / a)

    def abort_reference_delta(self, family: str) -> float:
        """P(the reference's upper bound is below its true rate), summed over the family."""
        return self.alpha * self._share(family) * self.reference_delta_share

    @property
    def errors_safe_log_threshold(self) -> float:
        """Each of the two routes to "errors are safe" gets half of ``beta``."""
        return math.log(2.0 / (self.beta * (1.0 - self.reference_delta_share)))

    @property
    def errors_safe_delta(self) -> float:
        """P(a lower bound of the stable's error rate is above its true rate): half for the
        stitched bound of the two-sample looks, half for a one-sample reference."""
        return self.beta * self.reference_delta_share

    @property
    def latency_safe_log_threshold(self) -> float:
        """Each latency threshold must be shown safe (intersection-union: no correction)."""
        return math.log(1.0 / (self.beta * (1.0 - self.reference_delta_share)))

    @property
    def latency_safe_delta(self) -> float:
        return self.beta * self.reference_delta_share

    def error_limit(self, stable_rate_low: float | None) -> float:
        """The absolute limit the canary's errors are held to, from a lower bound of the
        stable's rate (None: no baseline, the configured limit alone)."""
        if stable_rate_low is None:
            return self.max_error_rate
        return _steps_down(
            min(self.max_error_rate, max(self.limit_ratio * stable_rate_low, self.limit_floor))
        )

    def latency_limits(
        self, stable_shares: Sequence[float], previous: Sequence[float | None] = ()
    ) -> list[float]:
        """Per threshold, the share of requests above it the canary must be shown under,
        from the stable's shares; a limit still within its 1 % step of ``previous`` is kept
        as it was (no log to take)."""
        ratio, floor = self.latency_max_ratio, self.limit_floor
        out = []
        for i, v in enumerate(stable_shares):
            raw = min(1.0, max(ratio * v, floor))
            last = previous[i] if i < len(previous) else None
            if last is not None and last <= raw < last * _STEP:
                out.append(last)
            else:
                out.append(_steps_down(raw))
        return out

    def latency_margin(self, threshold_ms: float) -> float:
        """``d = max(latency_margin_ms, latency_margin_ratio * t)``: how much slower than
        the stable's threshold ``t`` a canary's request may be before it counts as slow.

        >>> JudgeConfig().latency_margin(1.0), JudgeConfig(latency_margin_ratio=0.1).latency_margin(120.0)
        (2.0, 12.0)
        """
        return max(self.latency_margin_ms, self.latency_margin_ratio * threshold_ms)

    def canary_thresholds(self, thresholds_ms: Sequence[float]) -> tuple[float, ...]:
        """The thresholds the canary's requests are counted against: ``t + d`` each (see
        the module doc); ascending when ``thresholds_ms`` are.

        >>> JudgeConfig().canary_thresholds([1.0, 120.0])
        (3.0, 122.0)
        """
        return tuple(t + self.latency_margin(t) for t in thresholds_ms)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_STEP = math.exp(0.01)


def _steps_down(limit: float) -> float:
    """``limit`` rounded down to a 1 % step (a limit that barely moves keeps its cached
    logs; down, so that the canary is held to at most the stated limit)."""
    if limit >= 1.0:
        return 1.0
    return math.exp(math.floor(math.log(limit) * 100.0) / 100.0)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
