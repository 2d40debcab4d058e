"""The judge's input: what the router logged, cut into looks, arms and strata.

At every look the watch loop asks the router for the attempts logged since the last one
(:meth:`~.routers.base.TrafficRouter.served`, read exactly once each) and counts, per arm
(``canary``: the new version, ``stable``: the one it replaces) and per stratum (``user``
requests, the rollout's synthetic ``load``), requests, errors and slow events: requests
slower than each latency threshold frozen from the stable version before the switch
(:func:`baseline`); an attempt that ended without a response time (timed out) is slow for
every threshold. Nothing here judges: the counts go to :mod:`.judge`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crackseg.utils.deployment.rollout.routers.base import Served, TrafficRouter

__all__ = [
    "BASELINE_SECONDS",
    "MIN_THRESHOLD_SAMPLES",
    "STRATA",
    "THRESHOLD_QUANTILES",
    "ArmCounts",
    "ArmReader",
    "Baseline",
    "Look",
    "baseline",
]

STRATA = ("user", "load")
# The stable's latency quantiles that become slow-event thresholds (the whole distribution:
# the middle, the shoulder and the tail), from its traffic of the last BASELINE_SECONDS.
THRESHOLD_QUANTILES = (0.5, 0.9, 0.99)
BASELINE_SECONDS = 300.0
# Below this many stable requests a quantile is noise: no latency threshold, and the
# evidence says the latency test had nothing to compare with.
MIN_THRESHOLD_SAMPLES = 50


@dataclass
class ArmCounts:
    """One arm's requests, errors and slow events (one count per threshold)."""

    requests: int = 0
    errors: int = 0
    slow: list[int] = field(default_factory=list)

    def add(self, s: Served, thresholds_ms: Sequence[float]) -> None:
        if len(self.slow) < len(thresholds_ms):
            self.slow += [0] * (len(thresholds_ms) - len(self.slow))
        self.requests += 1
        self.errors += s.error
        for k, tau in enumerate(thresholds_ms):
            if s.ms is None or s.ms > tau:
                self.slow[k] += 1

    def merge(self, other: ArmCounts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        if len(self.slow) < len(other.slow):
            self.slow += [0] * (len(other.slow) - len(self.slow))
        for k, n in enumerate(other.slow):
            self.slow[k] += n

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "slow": list(self.slow)}


@dataclass
class Look:
    """One look's batch: ``counts[stratum][arm]`` for every stratum and arm, with
    ``thresholds`` slow-event counts each."""

    thresholds: int = 0
    counts: dict[str, dict[str, ArmCounts]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in STRATA:
            arms = self.counts.setdefault(s, {})
            for arm in ("canary", "stable"):
                counts = arms.setdefault(arm, ArmCounts())
                counts.slow += [0] * (self.thresholds - len(counts.slow))

    def arm(self, arm: str, stratum: str | None = None) -> ArmCounts:
        """One arm's counts in ``stratum``, or summed over both strata."""
        if stratum is not None:
            return self.counts[stratum][arm]
        total = ArmCounts(slow=[0] * self.thresholds)
        for s in STRATA:
            total.merge(self.counts[s][arm])
        return total

    def merge(self, other: Look) -> None:
        for s in STRATA:
            for arm in ("canary", "stable"):
                self.counts[s][arm].merge(other.counts[s][arm])

    def to_dict(self) -> dict[str, Any]:
        return {s: {a: c.to_dict() for a, c in arms.items()} for s, arms in self.counts.items()}


@dataclass(frozen=True)
class Baseline:
    """The stable version's own figures over ``window_seconds`` just before the switch: the
    reference of the one-sample tests (no concurrent stable traffic) and the source of the
    slow-event thresholds."""

    requests: int
    errors: int
    thresholds_ms: tuple[float, ...]
    slow: tuple[int, ...]
    window_seconds: float

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "thresholds_ms": [round(t, 3) for t in self.thresholds_ms],
            "slow": list(self.slow),
            "window_seconds": round(self.window_seconds, 3),
        }


def _quantile(sorted_ms: list[float], q: float) -> float:
    k = (len(sorted_ms) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (k - lo)


def baseline(
    router: TrafficRouter,
    addresses: Sequence[str],
    *,
    seconds: float = BASELINE_SECONDS,
    until: float | None = None,
) -> Baseline:
    """The stable version's user traffic over the last ``seconds`` before ``until`` (Unix
    time, default now): its counts, and thresholds at :data:`THRESHOLD_QUANTILES` of its
    latencies when it served at least :data:`MIN_THRESHOLD_SAMPLES` requests (else none).
    Raises what :meth:`~.routers.base.TrafficRouter.served` raises."""
    end = time.time() if until is None else until
    _, served = router.served(addresses, 0)
    picked = [s for s in served if end - seconds <= s.at <= end and not s.synthetic]
    times = sorted(s.ms for s in picked if s.ms is not None)
    thresholds: tuple[float, ...] = ()
    if len(times) >= MIN_THRESHOLD_SAMPLES:
        # Strictly increasing: a tie (a flat distribution) would test the same event twice.
        qs = [_quantile(times, q) for q in THRESHOLD_QUANTILES]
        thresholds = tuple(sorted(set(qs)))
    counts = ArmCounts(slow=[0] * len(thresholds))
    for s in picked:
        counts.add(s, thresholds)
    first = min((s.at for s in picked), default=end)
    return Baseline(
        counts.requests,
        counts.errors,
        thresholds,
        tuple(counts.slow),
        end - first,
    )


class ArmReader:
    """Cuts the router's log into looks for one analysis: ``canary`` and ``stable``
    addresses, attempts that ended at or after ``since`` (Unix time), slow events over
    ``thresholds_ms``. Each :meth:`look` returns what was logged since the previous one;
    :attr:`total` sums them all (the evidence carries across looks and weight steps)."""

    def __init__(
        self,
        router: TrafficRouter,
        canary: Sequence[str],
        stable: Sequence[str],
        thresholds_ms: Sequence[float],
        since: float,
    ) -> None:
        self.router = router
        self.arm_of = {a: "stable" for a in stable} | {a: "canary" for a in canary}
        self.thresholds_ms = tuple(thresholds_ms)
        self.since = since
        self.total = Look(len(self.thresholds_ms))
        self._cursor = 0

    def look(self) -> Look:
        """The next batch; raises what :meth:`~.routers.base.TrafficRouter.served` raises
        (a failed read is a failed measurement, and the cursor does not move)."""
        cursor, served = self.router.served(list(self.arm_of), self._cursor)
        self._cursor = cursor
        batch = Look(len(self.thresholds_ms))
        for s in served:
            if s.at < self.since:
                continue
            stratum = "load" if s.synthetic else "user"
            batch.counts[stratum][self.arm_of[s.address]].add(s, self.thresholds_ms)
        self.total.merge(batch)
        return batch
