"""What goes into the judge (:class:`ArmCounts`) and what comes out (:class:`Judgement`,
:class:`Evidence`): plain values, JSON-serialisable through ``to_dict()`` with stable
field names (the rollout record, the API, the alert and ``/metrics`` read them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["ArmCounts", "Evidence", "Explanation", "JudgeVerdict", "Judgement", "ReasonCode"]


class JudgeVerdict(StrEnum):
    """The four answers; the values are :class:`~..gate.Verdict`'s, so one maps onto the other."""

    PASSED = "passed"  # promote: evidence of safety
    FAILED = "failed"  # abort: evidence of harm
    INCONCLUSIVE = "inconclusive"  # keep gathering (or fail closed at the timeout)
    ERROR = "error"  # the measurement itself is broken: never a pass


class ReasonCode(StrEnum):
    """Why, for a program; :attr:`Judgement.reason` says it in words."""

    WORSE_ERRORS = "worse_errors"
    WORSE_LATENCY = "worse_latency"
    SAFE = "safe"
    GATHERING = "gathering"
    NO_TRAFFIC = "no_traffic"
    BROKEN_MEASUREMENT = "broken_measurement"
    NO_REFERENCE = "no_reference"


@dataclass(frozen=True)
class ArmCounts:
    """One arm's requests in one batch (a look), or a reference measured before.

    ``slow[k]`` counts requests that completed slower than threshold ``k`` (the judge's
    ``thresholds_ms``, ascending, so the counts never increase with ``k``); ``timeouts``
    counts requests that never completed: they are slow for every threshold. Whether a
    timeout is also an error is the caller's measurement (the router counts it as one).
    """

    requests: int
    errors: int = 0
    slow: tuple[int, ...] = ()
    timeouts: int = 0

    def problem(self, thresholds: int) -> str | None:
        """What is wrong with these counts for ``thresholds`` thresholds, or None."""
        values = {"requests": self.requests, "errors": self.errors, "timeouts": self.timeouts}
        values.update({f"slow[{k}]": v for k, v in enumerate(self.slow)})
        for name, v in values.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"{name} is {type(v).__name__}, not a count"
            if isinstance(v, float) and not (math.isfinite(v) and float(v).is_integer()):
                return f"{name} is {v!r}, not a whole number"
            if v < 0:
                return f"{name} is negative ({v})"
        if self.errors > self.requests:
            return f"errors ({self.errors}) exceed requests ({self.requests})"
        if len(self.slow) != thresholds:
            return f"{len(self.slow)} slow counts for {thresholds} thresholds"
        for k, v in enumerate(self.slow):
            if v + self.timeouts > self.requests:
                return f"slow[{k}] + timeouts ({v} + {self.timeouts}) exceed requests"
            if k and v > self.slow[k - 1]:
                return f"slow[{k}] ({v}) exceeds slow[{k - 1}] for a lower threshold"
        if not self.slow and self.timeouts > self.requests:
            return f"timeouts ({self.timeouts}) exceed requests ({self.requests})"
        return None

    def checked(self, thresholds: int) -> ArmCounts | str:
        """These counts as whole ints, or what is wrong with them (see :meth:`problem`)."""
        r, e, t, slow = self.requests, self.errors, self.timeouts, self.slow
        # The common case in a few C-level tests; anything unusual takes the slow path.
        try:
            fast = (
                type(r) is int
                and type(e) is int
                and type(t) is int
                and 0 <= e <= r
                and 0 <= t <= r
                and len(slow) == thresholds
                and (
                    not slow
                    or (
                        type(sum(slow)) is int
                        and slow[0] + t <= r
                        and slow[-1] >= 0
                        and list(slow) == sorted(slow, reverse=True)
                    )
                )
            )
        except TypeError:
            fast = False
        if fast:
            return self
        problem = self.problem(thresholds)
        if problem is not None:
            return problem
        return ArmCounts(int(r), int(e), tuple(int(v) for v in slow), int(t))

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": int(self.requests),
            "errors": int(self.errors),
            "slow": [int(v) for v in self.slow],
            "timeouts": int(self.timeouts),
        }


@dataclass
class Evidence:
    """Everything a verdict rests on. e-values are capped at 1e300 (``log_*`` keep the rest).

    ``mode`` is ``"two-sample"`` (against a stable serving at the same time) or
    ``"one-sample"`` (against ``reference``, the stable's figures measured before: a
    blue-green bake, a 100 % step, the guard) once any one-sample look was taken.
    ``error_ratio`` is the anytime-valid interval for the canary's error rate over the
    stable's, at ``1 - alpha``; ``canary_thresholds_ms`` are the thresholds the canary's
    slow requests were counted above (each of ``thresholds_ms`` plus its latency margin); ``p_value`` the sequential p-value of "worse" (both
    families, Bonferroni: ``min(1, 2 · min_f 1/max_t E_f)``, so ``p ≤ alpha`` is an abort).
    """

    mode: str
    canary: ArmCounts
    stable: ArmCounts
    reference: ArmCounts | None
    window_canary_requests: int
    thresholds_ms: tuple[float, ...]
    e_errors: float
    e_latency: float
    e_latency_per_threshold: tuple[float, ...]
    e_errors_not_worse: float
    e_errors_below_limit: float
    e_latency_below_limit: tuple[float, ...]
    error_limit: float | None
    latency_limits: tuple[float | None, ...]
    p_value: float
    error_ratio_low: float
    error_ratio_high: float
    error_ratio_estimate: float | None
    level: float
    needed_requests: float | None = None
    missing: tuple[str, ...] = field(default_factory=tuple)
    canary_thresholds_ms: tuple[float, ...] = ()

    def ratio_text(self) -> str:
        """ "canary 5xx rate 3.1x-41x the stable's, 99 %" (or what the data allow)."""
        lo, hi = self.error_ratio_low, self.error_ratio_high
        pct = f"{100 * self.level:g} %"
        if lo <= 0.0 and math.isinf(hi):
            return f"canary error rate vs the stable's: no bound yet ({pct})"
        low = f"{lo:.2g}x" if lo > 0 else "0x"
        high = f"{hi:.2g}x" if math.isfinite(hi) else "∞"
        return f"canary error rate {low}-{high} the stable's ({pct})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "canary": self.canary.to_dict(),
            "stable": self.stable.to_dict(),
            "reference": self.reference.to_dict() if self.reference else None,
            "window_canary_requests": self.window_canary_requests,
            "thresholds_ms": list(self.thresholds_ms),
            "canary_thresholds_ms": [_finite(t) for t in self.canary_thresholds_ms],
            "e_values": {
                "errors": _finite(self.e_errors),
                "latency": _finite(self.e_latency),
                "latency_per_threshold": [_finite(e) for e in self.e_latency_per_threshold],
                "errors_not_worse": _finite(self.e_errors_not_worse),
                "errors_below_limit": _finite(self.e_errors_below_limit),
                "latency_below_limit": [_finite(e) for e in self.e_latency_below_limit],
            },
            "p_value": self.p_value,
            "error_ratio": {
                "low": self.error_ratio_low,
                "high": _finite(self.error_ratio_high),
                "estimate": self.error_ratio_estimate,
                "level": self.level,
                "text": self.ratio_text(),
            },
            "limits": {"error_rate": self.error_limit, "latency_share": list(self.latency_limits)},
            "needed_requests": _finite(self.needed_requests),
            "missing": list(self.missing),
        }


class Explanation(Protocol):
    """What a judgement was made of, read only when someone asks (a look stays cheap)."""

    def reason(self, verdict: JudgeVerdict, code: ReasonCode) -> str: ...

    def evidence(self) -> Evidence: ...


class Judgement:
    """A verdict, why as a code and in words, and its evidence.

    ``reason`` and ``evidence`` are computed on first read from a copy of the judge's state
    taken at the look (the judge may go on observing meanwhile), and kept.
    """

    __slots__ = ("_evidence", "_reason", "_source", "code", "verdict")

    def __init__(self, verdict: JudgeVerdict, code: ReasonCode, source: Explanation) -> None:
        self.verdict = verdict
        self.code = code
        self._source = source
        self._reason: str | None = None
        self._evidence: Evidence | None = None

    @property
    def reason(self) -> str:
        if self._reason is None:
            self._reason = self._source.reason(self.verdict, self.code)
        return self._reason

    @property
    def evidence(self) -> Evidence:
        if self._evidence is None:
            self._evidence = self._source.evidence()
        return self._evidence

    @property
    def passed(self) -> bool:
        return self.verdict is JudgeVerdict.PASSED

    @property
    def failed(self) -> bool:
        return self.verdict is JudgeVerdict.FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "code": self.code.value,
            "evidence": self.evidence.to_dict(),
        }

    def __repr__(self) -> str:
        return f"Judgement({self.verdict.value}, {self.code.value}: {self.reason})"


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: None stands for "unbounded" (and a huge e-value is capped)."""
    if value is None or math.isnan(value) or value == math.inf:
        return None
    return min(value, 1e300)
