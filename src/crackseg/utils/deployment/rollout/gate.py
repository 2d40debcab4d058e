"""Gates: turn observations into a verdict with a reason.

A verdict has four answers, not two, as in Argo Rollouts: ``passed``, ``failed``,
``inconclusive`` (not enough data yet: wait up to a bound, then do what ``on_inconclusive``
says) and ``error`` (the measurement itself broke: never read as a pass;
``consecutive_error_limit`` of them in a row roll back). The functions here are pure: they
judge data they are given, so a test can feed them any history and the strategies can
re-judge at every probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.version import compare_version
from crackseg.utils.deployment.rollout.analysis import PerformanceSnapshot

__all__ = ["AnalysisCriteria", "GateResult", "Verdict", "judge_analysis", "judge_probes"]


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


@dataclass(frozen=True)
class GateResult:
    """A verdict and why.

    >>> GateResult(Verdict.FAILED, "error rate 30.0% > 5.0%").failed
    True
    """

    verdict: Verdict
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASSED

    @property
    def failed(self) -> bool:
        return self.verdict is Verdict.FAILED


@dataclass(frozen=True)
class AnalysisCriteria:
    """Thresholds a new version's traffic is judged on (see :class:`DeploymentConfig`)."""

    max_error_rate_percent: float = 5.0
    max_p95_latency_ms: float | None = 1000.0
    max_error_rate_delta_percent: float = 5.0
    max_latency_ratio: float = 2.0
    latency_slack_ms: float = 25.0
    min_samples: int = 20


def judge_probes(
    results: Sequence[HealthCheckResult],
    *,
    success_threshold: int,
    failure_threshold: int,
    expected_version: str | None = None,
) -> GateResult:
    """Judge a run of health probes, oldest first, on its consecutive tail.

    ``failure_threshold`` consecutive failures fail; ``success_threshold`` consecutive
    successes pass; anything else is inconclusive. With ``expected_version``, a healthy
    answer reporting another version fails at once (both named), and one reporting none
    cannot pass (inconclusive: no evidence that the new build runs).
    """
    if not results:
        return GateResult(Verdict.INCONCLUSIVE, "no health probe yet")
    last = results[-1]
    if expected_version is not None and last.success:
        report = compare_version(last, expected_version)
        if report.matches is False:
            return GateResult(Verdict.FAILED, report.message(), {"version": report.reported})
        if report.matches is None:
            return GateResult(Verdict.INCONCLUSIVE, f"healthy but {report.message()}")
    streak = 0
    for r in reversed(results):
        if r.success != last.success:
            break
        streak += 1
    if not last.success and streak >= failure_threshold:
        return GateResult(
            Verdict.FAILED,
            f"{streak} consecutive failed health checks: {last.error_message or last.status}",
            {"consecutive_failures": streak},
        )
    if last.success and streak >= success_threshold:
        return GateResult(
            Verdict.PASSED,
            f"{streak} consecutive healthy checks",
            {"consecutive_successes": streak},
        )
    state = "healthy" if last.success else f"failing ({last.error_message or last.status})"
    return GateResult(Verdict.INCONCLUSIVE, f"{streak} consecutive checks {state}")


def judge_analysis(
    new: PerformanceSnapshot,
    stable: PerformanceSnapshot | None,
    criteria: AnalysisCriteria,
) -> GateResult:
    """Judge a new version's traffic against absolute thresholds and the stable version.

    Errors fail early: once the errors seen exceed what ``max_error_rate_percent`` allows
    even if the remaining ``min_samples`` requests all succeeded, waiting cannot help.
    Latency and the comparison with ``stable`` are judged only with enough data on both.
    """
    details: dict[str, Any] = {"new": new.to_dict(), "stable": stable.to_dict() if stable else None}
    if new.error is not None:
        return GateResult(Verdict.ERROR, f"measurement failed: {new.error}", details)
    requests = new.requests or 0
    errors = new.errors or 0
    if errors and requests:
        bound_rate = 100.0 * errors / max(requests, criteria.min_samples)
        if bound_rate > criteria.max_error_rate_percent:
            return GateResult(
                Verdict.FAILED,
                f"error rate {100.0 * errors / requests:.1f}% ({errors}/{requests}) > "
                f"{criteria.max_error_rate_percent}%",
                details,
            )
    note = f"; {new.note}" if new.note else ""
    if not new.enough_data:
        return GateResult(Verdict.INCONCLUSIVE, f"not enough data: {new.reason}{note}", details)
    rate = new.error_rate_percent or 0.0
    if (
        criteria.max_p95_latency_ms is not None
        and new.p95_ms is not None
        and new.p95_ms > criteria.max_p95_latency_ms
    ):
        return GateResult(
            Verdict.FAILED,
            f"p95 latency {new.p95_ms:.1f} ms > {criteria.max_p95_latency_ms} ms",
            details,
        )
    if stable is not None and stable.error is not None:
        return GateResult(Verdict.ERROR, f"stable measurement failed: {stable.error}", details)
    if stable is not None and stable.enough_data and stable.source == new.source:
        base = stable.error_rate_percent or 0.0
        if rate > base + criteria.max_error_rate_delta_percent:
            return GateResult(
                Verdict.FAILED,
                f"error rate {rate:.1f}% vs stable {base:.1f}% "
                f"(allowed +{criteria.max_error_rate_delta_percent} points)",
                details,
            )
        if (
            new.p95_ms is not None
            and stable.p95_ms is not None
            and new.p95_ms > stable.p95_ms * criteria.max_latency_ratio
            and new.p95_ms - stable.p95_ms > criteria.latency_slack_ms
        ):
            return GateResult(
                Verdict.FAILED,
                f"p95 latency {new.p95_ms:.1f} ms vs stable {stable.p95_ms:.1f} ms "
                f"(allowed x{criteria.max_latency_ratio})",
                details,
            )
    p95 = "n/a" if new.p95_ms is None else f"{new.p95_ms:.1f} ms"
    return GateResult(
        Verdict.PASSED,
        f"error rate {rate:.1f}% over {requests} requests, p95 {p95} ({new.source}){note}",
        details,
    )
