"""A judgement's words and evidence, computed when read from a copy of the judge's state.

A look only keeps references to the judge's running lists (updates replace them, never
change them in place), so it stays cheap; :class:`Snapshot` turns them into the
:class:`~.evidence.Evidence` and the reason when the caller reads them.
"""

from __future__ import annotations

import math
from typing import Protocol

from crackseg.utils.deployment.rollout.judge.config import JudgeConfig
from crackseg.utils.deployment.rollout.judge.evalues import (
    BelowLimit,
    RatioGrid,
    SplitEvidence,
    log_mean_exp,
    ratio_estimate,
    ratio_interval,
    requests_to_show_below,
)
from crackseg.utils.deployment.rollout.judge.evidence import (
    ArmCounts,
    Evidence,
    JudgeVerdict,
    ReasonCode,
)
from crackseg.utils.deployment.rollout.judge.slow import SlowEvidence

__all__ = ["JudgeState", "Snapshot", "Totals", "latency_label"]

_CAP = 690.0  # exp(690) ~ 1e300: e-values beyond are reported capped

_State = tuple[list[float], list[float] | None, list[float] | None]


class Totals:
    """Running sums of one arm: requests, errors, and events (slow or timed out) per threshold."""

    __slots__ = ("errors", "events", "requests", "slow", "timeouts")

    def __init__(self, k: int) -> None:
        self.requests = self.errors = self.timeouts = 0
        self.slow = [0] * k
        self.events = [0] * k

    def add(self, c: ArmCounts, events: list[int]) -> None:
        """Add a batch, with its ``events`` per threshold (slow or timed out). The lists are
        replaced, never changed in place: a snapshot or a caller may hold the old ones."""
        self.requests += c.requests
        self.errors += c.errors
        self.timeouts += c.timeouts
        if events:
            self.slow = [a + b for a, b in zip(self.slow, c.slow, strict=True)]
            self.events = [a + b for a, b in zip(self.events, events, strict=True)]

    def counts(self) -> ArmCounts:
        return ArmCounts(self.requests, self.errors, tuple(self.slow), self.timeouts)


class JudgeState(Protocol):
    """What a snapshot reads of the judge (a protocol: this module never imports the judge)."""

    @property
    def config(self) -> JudgeConfig: ...
    @property
    def err_grid(self) -> RatioGrid: ...
    @property
    def thresholds_ms(self) -> tuple[float, ...]: ...
    @property
    def canary_thresholds_ms(self) -> tuple[float, ...]: ...
    @property
    def thr_err(self) -> float: ...
    @property
    def thr_lat(self) -> float: ...
    @property
    def canary(self) -> Totals: ...
    @property
    def stable(self) -> Totals: ...
    @property
    def err(self) -> SplitEvidence: ...
    @property
    def slow(self) -> SlowEvidence: ...
    @property
    def err_below(self) -> BelowLimit: ...
    @property
    def err_above(self) -> BelowLimit: ...
    @property
    def err_limit(self) -> float | None: ...
    @property
    def max_log_err(self) -> float: ...
    @property
    def max_log_lat(self) -> float: ...
    @property
    def window(self) -> int: ...
    @property
    def one_sample(self) -> bool: ...
    @property
    def no_baseline(self) -> bool: ...
    @property
    def reference(self) -> ArmCounts | None: ...


class Snapshot:
    """The judge's state at one look: references to lists the judge replaces, never edits."""

    def __init__(
        self, judge: JudgeState, *, missing: list[str] | None = None, message: str | None = None
    ) -> None:
        self.judge = judge
        self.message = message
        self.missing = tuple(missing or ())
        c, s = judge.canary, judge.stable
        self.canary = (c.requests, c.errors, c.timeouts, c.slow, c.events)
        self.stable = (s.requests, s.errors, s.timeouts, s.slow, s.events)
        self.err: _State = judge.err.state()
        # Copies of short lists: SlowEvidence updates its own in place.
        self.lat = tuple(judge.slow.log_slower)
        self.lat_below = [b.la for b in judge.slow.below]
        self.lat_limits = tuple(judge.slow.limits)
        self.err_below, self.err_above = judge.err_below.la, judge.err_above.la
        self.err_limit = judge.err_limit
        self.max_logs = (judge.max_log_err, judge.max_log_lat)
        self.window = judge.window
        self.one_sample, self.no_baseline = judge.one_sample, judge.no_baseline
        self.reference = judge.reference

    # -- evidence ---------------------------------------------------------------------
    def evidence(self) -> Evidence:
        j = self.judge
        cfg = j.config
        err = SplitEvidence.restore(j.err_grid, self.err)
        log_err = log_mean_exp(self.err_above) if self.no_baseline else err.log_e_worse()
        per_threshold = tuple(_exp(v) for v in self.lat)
        low, high = ratio_interval(j.err_grid, err.worse_ll(), err.better_ll(), cfg.alpha)
        # Each family's sequential p-value is 1/max_t E over its share of alpha: p <= alpha
        # exactly when one of them crossed its abort bound.
        p = min(
            1.0,
            math.exp(-self.max_logs[0]) / cfg.error_share,
            math.exp(-self.max_logs[1]) / (1.0 - cfg.error_share),
        )
        return Evidence(
            mode="one-sample" if self.one_sample else "two-sample",
            canary=_counts(self.canary),
            stable=_counts(self.stable),
            reference=self.reference,
            window_canary_requests=self.window,
            thresholds_ms=j.thresholds_ms,
            canary_thresholds_ms=j.canary_thresholds_ms,
            e_errors=_exp(log_err),
            e_latency=sum(per_threshold) / len(per_threshold) if per_threshold else 0.0,
            e_latency_per_threshold=per_threshold,
            e_errors_not_worse=_exp(err.log_e_not_worse()),
            e_errors_below_limit=_exp(log_mean_exp(self.err_below)),
            e_latency_below_limit=tuple(_exp(log_mean_exp(la)) for la in self.lat_below),
            error_limit=self.err_limit,
            latency_limits=self.lat_limits,
            p_value=p,
            error_ratio_low=low,
            error_ratio_high=high,
            error_ratio_estimate=ratio_estimate(j.err_grid, err.worse_ll()),
            level=1.0 - cfg.alpha,
            needed_requests=self._needed() if self.missing else None,
            missing=self.missing,
        )

    def _needed(self) -> float:
        """Canary requests the missing safety evidence needs at the canary's current rates.

        An estimate: each missing part on its own (they gather in parallel, so the most
        demanding one counts), on the rate-below-limit route only (with rare errors the
        fast one), at the canary's rates so far with the bet's prior (half an event at the
        limit), so that no event yet does not read as a rate of zero.
        """
        cfg = self.judge.config
        n, x = self.canary[0], self.canary[1]
        events = self.canary[4]
        out = 0.0
        if "errors" in self.missing:
            if self.err_limit is None:
                return math.inf
            rate = (x + 0.5 * self.err_limit) / (n + 1)
            out = requests_to_show_below(
                rate, self.err_limit, log_mean_exp(self.err_below), cfg.errors_safe_log_threshold
            )
        for i, la in enumerate(self.lat_below):
            if latency_label(self.judge, i) not in self.missing:
                continue
            limit = self.lat_limits[i]
            if limit is None:
                return math.inf
            rate = (events[i] + 0.5 * limit) / (n + 1)
            log_e = log_mean_exp(la)
            need = requests_to_show_below(rate, limit, log_e, cfg.latency_safe_log_threshold)
            out = max(out, need)
        return out

    # -- words ------------------------------------------------------------------------
    def reason(self, verdict: JudgeVerdict, code: ReasonCode) -> str:
        if self.message is not None:
            return self.message
        ev = self.evidence()
        if code is ReasonCode.WORSE_ERRORS:
            return self._worse_errors(ev)
        if code is ReasonCode.WORSE_LATENCY:
            return self._worse_latency(ev)
        if code is ReasonCode.SAFE:
            return self._safe(ev)
        if code is ReasonCode.NO_TRAFFIC:
            return (
                "no user request reached the new version in this window: judge it on health probes"
            )
        needed = ev.needed_requests
        more = (
            "not while its rates stay as they are"
            if needed is None or math.isinf(needed)
            else f"about {math.ceil(needed)} more canary requests at its current rates"
        )
        return (
            f"not enough evidence yet ({', '.join(self.missing)} not shown safe): {more}; "
            f"{ev.ratio_text()}{self._mode()}"
        )

    def _mode(self) -> str:
        if self.no_baseline:
            return " (no baseline: against the absolute limit only)"
        if self.one_sample:
            return " (one-sample: against the stable's figures measured before)"
        return ""

    def _worse_errors(self, ev: Evidence) -> str:
        c, s = ev.canary, ev.stable
        what = (
            f"canary errors above {self.judge.config.max_error_rate:.2%}"
            if self.no_baseline
            else f"canary errors worse than the stable's: {ev.ratio_text()}"
        )
        return (
            f"{what}; e-value {ev.e_errors:.3g} >= {math.exp(self.judge.thr_err):.3g} "
            f"(canary {c.errors}/{c.requests}, stable {s.errors}/{s.requests}){self._mode()}"
        )

    def _worse_latency(self, ev: Evidence) -> str:
        per = ev.e_latency_per_threshold
        i = max(range(len(per)), key=per.__getitem__)
        c, s = self.canary, self.stable
        return (
            f"canary slower than the stable: slow-request e-value {ev.e_latency:.3g} >= "
            f"{math.exp(self.judge.thr_lat):.3g}; {_above(self.judge, i)}: "
            f"canary {c[4][i]}/{c[0]}, stable {s[4][i]}/{s[0]}{self._mode()}"
        )

    def _safe(self, ev: Evidence) -> str:
        c = ev.canary
        lat = (
            f", latency shown within x{self.judge.config.latency_max_ratio:g} per threshold"
            if self.lat and not self.no_baseline
            else ""
        )
        limit = "" if ev.error_limit is None else f", limit {ev.error_limit:.2%}"
        return (
            f"evidence of safety: canary errors {c.errors}/{c.requests}{limit}{lat}; "
            f"{ev.ratio_text()}{self._mode()}"
        )


def _above(judge: JudgeState, i: int) -> str:
    """Threshold ``i`` in words, with the canary's shifted one: "above 120 ms (canary:
    above 132 ms)"."""
    t, tc = judge.thresholds_ms[i], judge.canary_thresholds_ms[i]
    if math.isinf(tc):
        return f"above {t:g} ms (canary: not resolved, past the histogram's last bucket)"
    canary = f" (canary: above {round(tc, 3):g} ms)" if tc != t else ""
    return f"above {t:g} ms{canary}"


def latency_label(judge: JudgeState, i: int) -> str:
    """How a missing latency threshold is named in a judgement's ``missing``."""
    return f"latency {_above(judge, i)}"


def _counts(t: tuple[int, int, int, list[int], list[int]]) -> ArmCounts:
    return ArmCounts(t[0], t[1], tuple(t[3]), t[2])


def _exp(log_e: float) -> float:
    return math.exp(min(log_e, _CAP))
