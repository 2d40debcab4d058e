"""One rollout's judge over the router's log: the pure :class:`~.judge.CanaryJudge` fed
with per-look batches (:mod:`.arms`), kept from the first analysed window to the last, so the
evidence carries across weight steps.

What it adds to the judge: the baseline (thresholds and the one-sample reference, from the
stable's user traffic just before the switch), the two strata (user requests and the
rollout's synthetic load, each batch judged with its own canary share), the choice of mode
per window (two-sample while a stable serves beside the new version, one-sample against the
reference when none does), and the one check outside the statistical budget: a version that
fails every request is plainly broken.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from crackseg.utils.deployment.rollout.arms import (
    STRATA,
    ArmReader,
    Baseline,
    Look,
    LookReader,
    baseline,
)
from crackseg.utils.deployment.rollout.counters import IncreaseReader
from crackseg.utils.deployment.rollout.judge import (
    ArmCounts,
    CanaryJudge,
    JudgeConfig,
    Judgement,
    JudgeVerdict,
)
from crackseg.utils.deployment.rollout.routers.base import TrafficRouter

__all__ = ["BROKEN_MIN_REQUESTS", "Judging", "summarize"]

# A window whose canary requests all failed, at least this many, is plainly broken.
BROKEN_MIN_REQUESTS = 5


class Judging:
    """The judge of one rollout over ``router``'s log from ``since`` (Unix time): thresholds
    and one-sample reference from ``base`` (or ``reference``, when given); the looks come
    from ``reader`` when given (e.g. the instances' counters), else from ``router``'s log.
    Its methods raise what the reader raises. Not thread-safe."""

    def __init__(
        self,
        router: TrafficRouter | None,
        base: Baseline,
        since: float,
        config: JudgeConfig,
        *,
        reference: ArmCounts | None = None,
        reader: LookReader | None = None,
    ) -> None:
        self.baseline = base
        ref = reference if reference is not None else base.counts
        self.judge = CanaryJudge(
            config,
            thresholds_ms=base.thresholds_ms,
            reference=ref if ref.requests else None,
            canary_thresholds_ms=base.canary_thresholds_ms or None,
        )
        if reader is None:
            if router is None:
                raise ValueError("Judging needs a router or a reader")
            canary = self.judge.canary_thresholds_ms
            reader = ArmReader(router, [], [], base.thresholds_ms, since, canary)
        self.reader: LookReader = reader
        self.window = Look(len(base.thresholds_ms))
        self.two_sample = False
        self.last: Judgement = self.judge.judgement()

    @classmethod
    def for_rollout(
        cls, router: TrafficRouter, stable: Sequence[str], switched_at: float, config: JudgeConfig
    ) -> Judging:
        """The judge of a rollout replacing ``stable`` (its addresses), whose traffic first
        reached the new version at ``switched_at`` (Unix time): the baseline is the stable's
        user traffic just before."""
        return cls(router, baseline(router, stable, until=switched_at), switched_at, config)

    @classmethod
    def for_counters(
        cls, reader: IncreaseReader, stable: Sequence[str], config: JudgeConfig
    ) -> Judging:
        """The judge of a rollout replacing ``stable`` (its addresses) over the instances'
        counters (their ``/metrics`` or a Prometheus server): thresholds and reference from
        the stable's counters now. Raises
        :class:`~.counters.MeasurementError`."""
        base = reader.baseline(stable, config)
        return cls(None, base, time.time(), config, reader=reader)

    def after(self, addresses: Sequence[str], since: float) -> Judging:
        """A judge of the promoted version alone from ``since`` (the post-promotion guard),
        one-sample against the best figures of the stable this rollout had: the larger of its
        baseline and what it served beside the new version."""
        seen = self.last.evidence.stable
        ref = seen if seen.requests > self.baseline.counts.requests else self.baseline.counts
        reader = self.reader.restart(since)
        out = Judging(None, self.baseline, since, self.judge.config, reference=ref, reader=reader)
        out.start_window(addresses, [])
        return out

    def start_window(self, canary: Sequence[str], stable: Sequence[str]) -> None:
        """A new analysis window (a weight step, a bake): the evidence carries on. With no
        ``stable`` beside the new version, looks are one-sample against the larger of the
        baseline and the stable's figures from the two-sample looks so far."""
        self.reader.set_arms(canary, stable)
        self.judge.start_window()
        self.window = Look(len(self.baseline.thresholds_ms))
        was_two = self.two_sample
        self.two_sample = bool(stable)
        if was_two and not self.two_sample:
            seen = self.last.evidence.stable
            if seen.requests > self.baseline.counts.requests:
                self.judge.set_reference(seen)

    def look(self) -> Judgement:
        """Read the batch since the last look, judge it, return the verdict so far."""
        batch = self.reader.look()
        self.window.merge(batch)
        for stratum in STRATA:
            canary = batch.counts(stratum, "canary")
            stable: ArmCounts | None = batch.counts(stratum, "stable")
            if not self.two_sample:
                stable = None
            if canary.requests == 0 and (stable is None or stable.requests == 0):
                continue
            j = self.judge.observe(canary, stable)
            if j.verdict in (JudgeVerdict.FAILED, JudgeVerdict.ERROR):
                self.last = j
                return j
        self.last = self.judge.judgement()
        return self.last

    def broken(self) -> str | None:
        """Why the new version is plainly broken in this window (every request failing),
        or None."""
        n, x = self.window.requests("canary"), self.window.errors("canary")
        if n >= BROKEN_MIN_REQUESTS and x == n:
            return f"every request to the new version failed ({x}/{n} in this window)"
        return None

    def view(self) -> dict[str, Any]:
        """For the record: where the counts come from, the baseline, this window's counts
        and the last judgement."""
        return {
            "source": self.reader.source,
            "baseline": self.baseline.to_dict(),
            "window": self.window.to_dict(),
            "alpha": self.judge.config.alpha,
            **self.last.to_dict(),
        }

    def look_note(self) -> dict[str, Any]:
        """The last judgement in brief, for a note per look: the counts per arm, the
        p-value, the verdict (the page draws the evidence as it accumulates from these)."""
        ev = self.last.evidence.to_dict()
        brief = {k: ev.get(k) for k in ("mode", "p_value")}
        for arm in ("canary", "stable"):
            counts = ev.get(arm) or {}
            brief[arm] = {"requests": counts.get("requests"), "errors": counts.get("errors")}
        return {
            "verdict": self.last.verdict.value,
            "alpha": self.judge.config.alpha,
            "evidence": brief,
        }


def summarize(view: dict[str, Any]) -> str:
    """One line for a person from a :meth:`Judging.view` (as stored in a record): the
    verdict, the counts per arm, the interval for the error-rate ratio, the e-values and the
    p-value, and what is missing.

    >>> summarize({"verdict": "failed", "code": "worse_errors", "evidence": {
    ...     "mode": "two-sample", "canary": {"requests": 300, "errors": 9},
    ...     "stable": {"requests": 290, "errors": 0}, "p_value": 0.004,
    ...     "e_values": {"errors": 250.0, "latency": 1.0},
    ...     "error_ratio": {"text": "canary error rate 3.1x-41x the stable's (99 %)"}}})
    "failed (worse_errors, two-sample): canary 9/300 errors, stable 0/290; canary error rate 3.1x-41x the stable's (99 %); e errors 250, latency 1; p 0.004"
    """
    ev = view.get("evidence") or {}
    c, s = ev.get("canary") or {}, ev.get("stable") or {}
    e = ev.get("e_values") or {}
    parts = [
        f"canary {c.get('errors', 0)}/{c.get('requests', 0)} errors, "
        f"stable {s.get('errors', 0)}/{s.get('requests', 0)}",
        str((ev.get("error_ratio") or {}).get("text", "")),
        f"e errors {_g(e.get('errors'))}, latency {_g(e.get('latency'))}; "
        f"p {_g(ev.get('p_value'))}",
    ]
    if ev.get("missing"):
        needed = ev.get("needed_requests")
        more = f", ~{needed:.0f} more canary requests" if isinstance(needed, int | float) else ""
        parts.append(f"missing: {', '.join(ev['missing'])}{more}")
    head = f"{view.get('verdict', '?')} ({view.get('code', '?')}, {ev.get('mode', '?')})"
    return f"{head}: " + "; ".join(p for p in parts if p)


def _g(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "∞"
