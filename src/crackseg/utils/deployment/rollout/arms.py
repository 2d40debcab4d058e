"""The judge's input: what the router logged, cut into looks, arms and strata.

At every look the watch loop asks the router for the attempts logged since the last one
(:meth:`~.routers.base.TrafficRouter.served`, read exactly once each) and counts, per arm
(``canary``: the new version, ``stable``: the one it replaces) and per stratum (``user``
requests, the rollout's synthetic ``load``), requests, errors, timeouts (attempts that
ended without a response time) and slow requests: those slower than each latency threshold
frozen from the stable version before the switch (:func:`baseline`), the canary's slower
than each threshold plus its latency margin (the judge's ``canary_thresholds_ms``: see
:mod:`.judge.config`), in both strata. Nothing here judges:
the counts go to :class:`~.judge.CanaryJudge` as its :class:`~.judge.ArmCounts`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.rollout.judge import ArmCounts, count_slow, freeze_thresholds
from crackseg.utils.deployment.rollout.routers.base import Served, TrafficRouter

__all__ = [
    "ARMS",
    "BASELINE_SECONDS",
    "STRATA",
    "ArmReader",
    "Baseline",
    "Look",
    "LookReader",
    "baseline",
]

ARMS = ("canary", "stable")
STRATA = ("user", "load")
# The stable's traffic the thresholds and the one-sample reference are taken from.
BASELINE_SECONDS = 300.0


class _Tally:
    """Mutable counts of one arm in one stratum."""

    __slots__ = ("errors", "requests", "slow", "timeouts")

    def __init__(self, k: int) -> None:
        self.requests = self.errors = self.timeouts = 0
        self.slow = [0] * k

    def add(self, s: Served, thresholds_ms: Sequence[float]) -> None:
        self.requests += 1
        self.errors += s.error
        if s.ms is None:
            self.timeouts += 1  # slow for every threshold: the judge adds timeouts itself
            return
        for k, n in enumerate(count_slow((s.ms,), thresholds_ms)):
            self.slow[k] += n

    def counts(self) -> ArmCounts:
        return ArmCounts(self.requests, self.errors, tuple(self.slow), self.timeouts)


@dataclass
class Look:
    """One look's batch: requests per stratum and arm, as the judge's counts."""

    thresholds: int = 0
    _tallies: dict[tuple[str, str], _Tally] = field(default_factory=dict)

    def tally(self, stratum: str, arm: str) -> _Tally:
        key = (stratum, arm)
        if key not in self._tallies:
            self._tallies[key] = _Tally(self.thresholds)
        return self._tallies[key]

    def counts(self, stratum: str, arm: str) -> ArmCounts:
        return self.tally(stratum, arm).counts()

    def requests(self, arm: str, stratum: str | None = None) -> int:
        strata = STRATA if stratum is None else (stratum,)
        return sum(self.tally(s, arm).requests for s in strata)

    def errors(self, arm: str, stratum: str | None = None) -> int:
        strata = STRATA if stratum is None else (stratum,)
        return sum(self.tally(s, arm).errors for s in strata)

    def merge(self, other: Look) -> None:
        for (s, arm), t in other._tallies.items():
            mine = self.tally(s, arm)
            mine.requests += t.requests
            mine.errors += t.errors
            mine.timeouts += t.timeouts
            mine.slow = [a + b for a, b in zip(mine.slow, t.slow, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {s: {a: self.counts(s, a).to_dict() for a in ARMS} for s in STRATA}


@dataclass(frozen=True)
class Baseline:
    """The stable version's own user traffic over ``window_seconds`` just before the switch:
    the slow-event thresholds (empty, with ``note`` saying why, when it served too few
    requests to place them) and its counts against them, the reference of the judge's
    one-sample looks (no concurrent stable traffic). ``canary_thresholds_ms``, when the
    source fixes them (histogram buckets: ``inf`` where none is left), are those the
    canary is counted above; else () and the judge's config shifts ``thresholds_ms``."""

    thresholds_ms: tuple[float, ...]
    counts: ArmCounts
    window_seconds: float
    note: str = ""
    canary_thresholds_ms: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds_ms": list(self.thresholds_ms),
            # JSON has no infinity: None is "no bucket left" (no canary request slow).
            "canary_thresholds_ms": [
                t if math.isfinite(t) else None for t in self.canary_thresholds_ms
            ],
            "counts": self.counts.to_dict(),
            "window_seconds": round(self.window_seconds, 3),
            "note": self.note,
        }


def baseline(
    router: TrafficRouter,
    addresses: Sequence[str],
    *,
    seconds: float = BASELINE_SECONDS,
    until: float | None = None,
) -> Baseline:
    """The stable version's user requests over the last ``seconds`` before ``until`` (Unix
    time, default now). Raises what :meth:`~.routers.base.TrafficRouter.served` raises."""
    end = time.time() if until is None else until
    _, served = router.served(addresses, 0) if addresses else (0, [])
    picked = [s for s in served if end - seconds <= s.at <= end and not s.synthetic]
    note = ""
    try:
        thresholds = freeze_thresholds([s.ms for s in picked if s.ms is not None])
    except ConfigError as exc:
        thresholds, note = (), f"no latency thresholds: {exc.problem}"
    tally = _Tally(len(thresholds))
    for s in picked:
        tally.add(s, thresholds)
    first = min((s.at for s in picked), default=end)
    return Baseline(thresholds, tally.counts(), end - first, note)


class LookReader(Protocol):
    """Where a rollout's looks come from: the router's log (:class:`ArmReader`) or the
    instances' counters (:class:`~.counters.IncreaseReader`: their ``/metrics``, or a
    Prometheus server); ``source`` names it (``router``, ``metrics``, ``prometheus``)."""

    source: str

    def set_arms(self, canary: Sequence[str], stable: Sequence[str]) -> None:
        """Name the arms by instance address."""

    def look(self) -> Look:
        """The batch since the previous look; raises on a failed measurement."""
        ...

    def restart(self, since: float) -> LookReader:
        """A reader of the same source and thresholds, from ``since`` (Unix time)."""
        ...


class ArmReader:
    """Cuts the router's log into looks for one rollout: ``canary`` and ``stable``
    addresses (:meth:`set_arms` when they change), attempts that ended at or after
    ``since`` (Unix time), slow requests over ``thresholds_ms`` (the canary's over
    ``canary_thresholds_ms``, one per threshold: the judge's shifted ones; by default the
    same, which is valid but allows no latency margin). Each :meth:`look` returns what was
    logged since the previous one; :attr:`total` sums them."""

    source = "router"

    def __init__(
        self,
        router: TrafficRouter,
        canary: Sequence[str],
        stable: Sequence[str],
        thresholds_ms: Sequence[float],
        since: float,
        canary_thresholds_ms: Sequence[float] | None = None,
    ) -> None:
        self.router = router
        self.thresholds_ms = tuple(thresholds_ms)
        shifted = self.thresholds_ms if canary_thresholds_ms is None else canary_thresholds_ms
        if len(shifted) != len(self.thresholds_ms):
            raise ConfigError("canary_thresholds_ms", "give one per threshold")
        self.canary_thresholds_ms = tuple(shifted)
        self.since = since
        self.total = Look(len(self.thresholds_ms))
        self._cursor = 0
        self.set_arms(canary, stable)

    def set_arms(self, canary: Sequence[str], stable: Sequence[str]) -> None:
        self.arm_of = {a: "stable" for a in stable} | {a: "canary" for a in canary}

    def restart(self, since: float) -> ArmReader:
        return ArmReader(self.router, [], [], self.thresholds_ms, since, self.canary_thresholds_ms)

    def look(self) -> Look:
        """The next batch; raises what :meth:`~.routers.base.TrafficRouter.served` raises
        (a failed read is a failed measurement, and the cursor does not move)."""
        cursor, served = self.router.served(list(self.arm_of), self._cursor)
        self._cursor = cursor
        batch = Look(len(self.thresholds_ms))
        per_arm = {"canary": self.canary_thresholds_ms, "stable": self.thresholds_ms}
        for s in served:
            if s.at < self.since:
                continue
            stratum = "load" if s.synthetic else "user"
            arm = self.arm_of[s.address]
            batch.tally(stratum, arm).add(s, per_arm[arm])
        self.total.merge(batch)
        return batch
