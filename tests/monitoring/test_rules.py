"""The alert lifecycle as a pure function of observations and an injected clock."""

from __future__ import annotations

from crackseg.utils.deployment.models import HealthCheckResult, ResourceMetrics
from crackseg.utils.deployment.monitoring.rules import (
    DEFAULT_THRESHOLDS,
    AlertTracker,
    LifecycleSettings,
    Observation,
)


def obs(ok: bool, rt: float = 5.0, failures: int = 0, **kw: object) -> Observation:
    result = HealthCheckResult(ok, "healthy" if ok else "unhealthy", rt, 0.0,
                               None if ok else "HTTP 500")  # fmt: skip
    return Observation(
        result,
        kw.get("metrics"),  # type: ignore[arg-type]
        kw.get("process_name"),  # type: ignore[arg-type]
        kw.get("running"),  # type: ignore[arg-type]
        failures,
        kw.get("error_rate"),  # type: ignore[arg-type]
    )


def run(tracker: AlertTracker, seq: list[Observation], settings: LifecycleSettings,
        step: float = 1.0) -> list[tuple[float, str, str, bool]]:  # fmt: skip
    out = []
    for i, o in enumerate(seq):
        t = i * step
        for ev in tracker.evaluate(o, dict(DEFAULT_THRESHOLDS), settings, t, 1000.0 + t):
            out.append((t, ev.alert_type, ev.state, ev.repeat))
    return out


def test_fires_after_n_repeats_after_interval_resolves_after_m() -> None:
    settings = LifecycleSettings(failure_threshold=3, success_threshold=2, repeat_interval=10)
    seq = [obs(False, failures=i + 1) for i in range(15)] + [obs(True)] * 3
    events = [e for e in run(AlertTracker("d"), seq, settings) if e[1] == "health_check_failed"]
    assert events == [
        (2.0, "health_check_failed", "firing", False),  # third consecutive failure
        (12.0, "health_check_failed", "firing", True),  # repeat interval later, not before
        (16.0, "health_check_failed", "resolved", False),  # second good check
    ]


def test_a_single_success_resets_the_failure_count() -> None:
    settings = LifecycleSettings(failure_threshold=3, success_threshold=1)
    seq = [obs(False), obs(False), obs(True), obs(False), obs(False), obs(True)]
    assert run(AlertTracker("d"), seq, settings) == []


def test_threshold_rules_and_process_rules() -> None:
    settings = LifecycleSettings(failure_threshold=1, success_threshold=1)
    hot = ResourceMetrics(95.0, 3000.0, 10.0, 0.0)
    seq = [
        obs(True, rt=2000.0, metrics=hot, process_name="svc", running=True, error_rate=50.0),
        obs(True, rt=1.0, process_name="svc", running=False, error_rate=0.0),
    ]
    events = run(AlertTracker("d"), seq, settings)
    fired = {t for _, t, s, _ in events if s == "firing"}
    assert fired == {"high_response_time", "high_cpu_usage", "high_memory_usage",
                     "high_error_rate", "process_not_running"}  # fmt: skip
    resolved = {t for _, t, s, _ in events if s == "resolved"}
    # metrics missing on the second check: CPU/memory cannot be judged, so they stay firing
    assert resolved == {"high_response_time", "high_error_rate"}


def test_machine_metrics_are_not_judged_without_a_process() -> None:
    settings = LifecycleSettings(failure_threshold=1)
    hot = ResourceMetrics(99.0, 10_000.0, 10.0, 0.0)
    assert run(AlertTracker("d"), [obs(True, metrics=hot)], settings) == []
