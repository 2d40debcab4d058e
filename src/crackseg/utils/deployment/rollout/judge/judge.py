"""The canary judge: counts in, a verdict and its evidence out (:class:`CanaryJudge`).

Feed it one batch per look (the requests, errors and slow requests each arm served since
the previous look); it answers at once:

1. **error**: the counts are broken (negative, errors above requests, NaN, the wrong
   number of slow counts...). Nothing is learnt from them, and an error is never a pass.
2. **failed** (abort) as soon as the errors' or the latency's evidence that the canary is
   worse than ``margin`` x the stable reaches ``1/(alpha*share)``; aborting has priority.
3. **passed** (promote) when every part of the safety evidence is in (see
   :mod:`.config`): the errors, and each latency threshold. Safety once shown stays shown
   (Ville bounds the chance of *ever* crossing, so latching the first crossing is valid);
   the abort tests keep watching.
4. **inconclusive** otherwise: with the reason code ``no_traffic`` when no user request
   reached the new version in the current window (:meth:`CanaryJudge.start_window`), so the
   caller judges it on health probes and says so; else ``gathering``, with which evidence
   is missing and about how many more canary requests it needs.

Modes. *Two-sample*: ``observe(canary, stable)``, a stable serving at the same time.
*One-sample*: ``observe(canary)`` with no concurrent stable (a blue-green bake, a 100 %
step, the post-promotion guard): against ``reference``, the stable's figures measured
just before (given to the constructor or :meth:`CanaryJudge.set_reference`, else the
stable's totals from the two-sample looks so far, frozen at the first one-sample look);
the evidence says ``mode="one-sample"``. Evidence carries from one mode to the other. The
reference's own uncertainty is paid from the levels (``reference_delta_share``, see
:mod:`.config`): the abort side reads upper bounds of its rates, the promotion side lower
bounds, so both bounds hold in one-sample mode too. *No baseline* (one-sample with no
stable ever seen, a first deployment): the errors are judged against ``max_error_rate``
in both directions, latency is not judged, and the reason says so.

Cost: a look updates running sums (one ``log`` per grid point for the errors when there
were errors, two or three per latency threshold), then reads a few log-sum-exps; the
words and the evidence (the interval, per-threshold e-values, the requests still needed)
are computed only when read (:class:`~.evidence.Judgement`).

The derivation is in :mod:`.evalues`; the numbers and the race between the two kinds of
evidence in :mod:`.config`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.rollout.judge.config import JudgeConfig
from crackseg.utils.deployment.rollout.judge.evalues import (
    BelowLimit,
    RatioGrid,
    SplitEvidence,
    StitchedLowerBound,
    log_mean_exp,
    rate_bound,
)
from crackseg.utils.deployment.rollout.judge.evidence import (
    ArmCounts,
    Judgement,
    JudgeVerdict,
    ReasonCode,
)
from crackseg.utils.deployment.rollout.judge.explain import Snapshot, Totals, latency_label
from crackseg.utils.deployment.rollout.judge.slow import SlowEvidence

__all__ = ["CanaryJudge"]


class _Reference:
    """A frozen reference and the bounds of its rates the one-sample tests use."""

    __slots__ = ("counts", "err", "lat_hi", "lat_lo")

    def __init__(self, counts: ArmCounts, cfg: JudgeConfig) -> None:
        self.counts = counts
        n = counts.requests
        # Upper bounds for the abort side, lower ones for the promotion side, each at its
        # part of the level (see JudgeConfig); half of the promotion side's, the other
        # half being the stitched bounds of the two-sample looks before.
        d_err = cfg.abort_reference_delta("errors")
        self.err = (
            rate_bound(counts.errors, n, d_err, upper=True),
            rate_bound(counts.errors, n, cfg.errors_safe_delta / 2, upper=False),
        )
        events = _events(counts)
        d_lat = cfg.abort_reference_delta("latency") / max(1, len(events))
        self.lat_hi = [rate_bound(v, n, d_lat, upper=True) for v in events]
        self.lat_lo = [rate_bound(v, n, cfg.latency_safe_delta / 2, upper=False) for v in events]


class CanaryJudge:
    """Sequential judge of one canary against its stable version. Not thread-safe.

    ``thresholds_ms`` (ascending) are the latency thresholds frozen from the stable at the
    start (its p50, p90, p99: :func:`~.latency.freeze_thresholds`); every batch gives one
    slow count per threshold: the stable's (and the reference's) requests above
    ``thresholds_ms``, the canary's above :attr:`canary_thresholds_ms` (each threshold plus
    its latency margin, :meth:`~.config.JudgeConfig.canary_thresholds`; or
    ``canary_thresholds_ms`` as the source fixed them, e.g. histogram bucket bounds at or
    above, ``inf`` where none is: any bound ``>= t`` keeps the abort bound, a lower one
    than ``t + d`` is only stricter).

    >>> j = CanaryJudge()
    >>> j.observe(ArmCounts(100, 0), ArmCounts(900, 1)).verdict.value
    'inconclusive'
    >>> j.observe(ArmCounts(-1, 0), ArmCounts(900, 1)).verdict.value
    'error'
    """

    def __init__(
        self,
        config: JudgeConfig | None = None,
        *,
        thresholds_ms: Sequence[float] = (),
        reference: ArmCounts | None = None,
        canary_thresholds_ms: Sequence[float] | None = None,
    ) -> None:
        self.config = cfg = config or JudgeConfig()
        th = tuple(float(t) for t in thresholds_ms)
        if any(not math.isfinite(t) or t <= 0 for t in th) or any(
            b <= a for a, b in itertools.pairwise(th)
        ):
            raise ConfigError("thresholds_ms", f"give increasing positive times, got {list(th)}")
        self.thresholds_ms = th
        if canary_thresholds_ms is None:
            self.canary_thresholds_ms = cfg.canary_thresholds(th)
        else:
            tc = tuple(float(t) for t in canary_thresholds_ms)
            if len(tc) != len(th) or any(
                math.isnan(c) or c < t for c, t in zip(tc, th, strict=True)
            ):
                raise ConfigError(
                    "canary_thresholds_ms",
                    f"give one time per threshold, none below it (got {list(tc)} for {list(th)})",
                )
            self.canary_thresholds_ms = tc
        k = len(th)
        self.err_grid = RatioGrid(
            cfg.margin,
            cfg.worse_ratios,
            max_ratio=cfg.max_ratio,
            better=cfg.better_ratios,
            fine=True,
        )
        self.err = SplitEvidence(self.err_grid)
        self.slow = SlowEvidence(k, cfg.margin)
        self.err_below = BelowLimit()
        self.err_above = BelowLimit(above=True)  # no-baseline mode only
        self.canary, self.stable = Totals(k), Totals(k)
        self.window = 0
        self.errors_safe = False
        self.max_log_err = self.max_log_lat = 0.0
        self.one_sample = False
        self.no_baseline = False
        self.ref: _Reference | None = None
        self.err_limit: float | None = None
        self._err_low = StitchedLowerBound(cfg.errors_safe_delta / 2)
        self.thr_err = cfg.abort_log_threshold("errors")
        self.thr_lat = cfg.abort_log_threshold("latency")
        if reference is not None:
            self.set_reference(reference)

    # -- input ------------------------------------------------------------------------
    def set_reference(self, reference: ArmCounts) -> None:
        """Freeze the stable's figures one-sample looks are judged against."""
        checked = reference.checked(len(self.thresholds_ms))
        if isinstance(checked, ArmCounts) and checked.requests == 0:
            checked = "no request"
        if isinstance(checked, str):
            raise ConfigError("reference", f"{checked}: give the stable's counts measured before")
        self.ref = _Reference(checked, self.config)

    @property
    def reference(self) -> ArmCounts | None:
        """The frozen figures one-sample looks are judged against, if any yet."""
        return self.ref.counts if self.ref else None

    def start_window(self) -> None:
        """A new window (a weight step): evidence carries on, the traffic count restarts."""
        self.window = 0

    def observe(self, canary: ArmCounts, stable: ArmCounts | None = None) -> Judgement:
        """Add one batch (two-sample with ``stable``, else one-sample) and judge."""
        k = len(self.thresholds_ms)
        c = canary.checked(k)
        s = stable.checked(k) if stable is not None else None
        for name, arm in (("canary", c), ("stable", s)):
            if isinstance(arm, str):
                return Judgement(
                    JudgeVerdict.ERROR,
                    ReasonCode.BROKEN_MEASUREMENT,
                    Snapshot(self, message=f"broken measurement, nothing learnt: {name} {arm}"),
                )
        assert isinstance(c, ArmCounts) and not isinstance(s, str)
        if s is not None:
            self._add_two_sample(c, s)
        else:
            self._add_one_sample(c)
        self.window += c.requests
        return self.judgement()

    def _add_two_sample(self, canary: ArmCounts, stable: ArmCounts) -> None:
        cfg = self.config
        c_tot, s_tot = self.canary, self.stable
        n_c, n_s = canary.requests, stable.requests
        c_ev = _events(canary)
        s_ev = _events(stable)
        before_c, before_s = (c_tot.events, c_tot.requests), (s_tot.events, s_tot.requests)
        if n_c and n_s:
            # rho strictly inside (0, 1): with one arm serving every request the split is
            # certain whatever the ratio, and there is nothing to learn from it.
            share = n_c / (n_c + n_s)
            k_err = canary.errors + stable.errors
            if k_err:
                self.err.add_split(canary.errors, k_err, self.err_grid.denominators(share))
            if c_ev:
                self.slow.add_split((c_ev, n_c), (s_ev, n_s), share, before_c, before_s)
        s_tot.add(stable, s_ev)
        c_tot.add(canary, c_ev)
        if not s_tot.requests or not n_c:
            return
        # The limits follow the stable's measured rates, this batch included: they depend
        # on the stable's data only, independent of the canary's (see evalues).
        self.err_limit = cfg.error_limit(self._err_low.update(s_tot.errors, s_tot.requests))
        if not self.errors_safe:
            self.err_below.add(canary.errors, n_c, self.err_limit)
        if c_ev:
            # The stable's measured shares, not lower bounds (departure: see JudgeConfig).
            n = s_tot.requests
            shares = [v / n for v in s_tot.events]
            self.slow.limits = list(cfg.latency_limits(shares, self.slow.limits))
            self.slow.add_below((c_ev, n_c))

    def _add_one_sample(self, canary: ArmCounts) -> None:
        cfg = self.config
        self.one_sample = True
        if self.ref is None and self.stable.requests:
            self.ref = _Reference(self.stable.counts(), cfg)
        c_tot = self.canary
        c_ev = _events(canary)
        before = (c_tot.events, c_tot.requests)
        c_tot.add(canary, c_ev)
        n, x = canary.requests, canary.errors
        if n == 0:
            return
        ref = self.ref
        if ref is None:
            # No baseline at all: the absolute limit, both ways; latency is not judged.
            self.no_baseline = True
            self.err_limit = cfg.max_error_rate
            self.err_below.add(x, n, cfg.max_error_rate)
            self.err_above.add(x, n, cfg.max_error_rate)
            return
        p_hi, p_lo = ref.err
        self.err.add_one_sample(x, n, p_hi, p_lo)
        self.err_limit = cfg.error_limit(p_lo)
        if not self.errors_safe:
            self.err_below.add(x, n, self.err_limit)
        if c_ev:
            self.slow.add_one_sample((c_ev, n), before, ref.lat_hi)
            self.slow.limits = list(cfg.latency_limits(ref.lat_lo))
            self.slow.add_below((c_ev, n))

    # -- output -----------------------------------------------------------------------
    def log_e_errors(self) -> float:
        """log E of "the canary's errors are worse" (against the limit with no baseline)."""
        return self.err_above.log_e() if self.no_baseline else self.err.log_e_worse()

    def log_e_latency(self) -> float:
        """log of the mean over thresholds of each threshold's "slower" e-value."""
        if not self.thresholds_ms or self.no_baseline:
            return 0.0
        return log_mean_exp(self.slow.log_slower)

    def judgement(self) -> Judgement:
        """The verdict on everything observed so far (no new data)."""
        log_err, log_lat = self.log_e_errors(), self.log_e_latency()
        self.max_log_err = max(self.max_log_err, log_err)
        self.max_log_lat = max(self.max_log_lat, log_lat)
        if log_err >= self.thr_err:
            return Judgement(JudgeVerdict.FAILED, ReasonCode.WORSE_ERRORS, Snapshot(self))
        if log_lat >= self.thr_lat:
            return Judgement(JudgeVerdict.FAILED, ReasonCode.WORSE_LATENCY, Snapshot(self))
        missing = self._update_safety()
        if not missing:
            return Judgement(JudgeVerdict.PASSED, ReasonCode.SAFE, Snapshot(self))
        code = ReasonCode.NO_TRAFFIC if self.window == 0 else ReasonCode.GATHERING
        return Judgement(JudgeVerdict.INCONCLUSIVE, code, Snapshot(self, missing=missing))

    def _update_safety(self) -> list[str]:
        cfg = self.config
        if not self.errors_safe:
            thr = cfg.errors_safe_log_threshold
            self.errors_safe = self.err_below.crossed(thr) or (
                not self.no_baseline and self.err.log_e_not_worse() >= thr
            )
        missing = [] if self.errors_safe else ["errors"]
        if self.no_baseline:
            return missing
        thr = cfg.latency_safe_log_threshold
        for i, limit in enumerate(self.slow.limits):
            if self.slow.shown[i]:
                continue
            if limit is not None and limit >= 1.0:
                continue  # nothing to show while the limit is 100 % (not latched: it may drop)
            if limit is not None:
                self.slow.shown[i] = self.slow.below[i].crossed(thr)
            if not self.slow.shown[i]:
                missing.append(latency_label(self, i))
        return missing


def _events(c: ArmCounts) -> list[int]:
    """Slow events per threshold: the slow requests, and the timeouts for every threshold."""
    t = c.timeouts
    return [v + t for v in c.slow] if t else list(c.slow)
