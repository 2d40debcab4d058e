"""What the monitor knows of one deployment: its settings, counters, window and alerts.

Not thread-safe on its own: :class:`~.monitor.DeploymentHealthMonitor` holds its
lock around every call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crackseg.utils.deployment.errors import ConfigError, require_positive
from crackseg.utils.deployment.models import (
    AlertEvent,
    DeploymentMetadata,
    HealthCheckResult,
    HealthStatus,
    ResourceMetrics,
)
from crackseg.utils.deployment.monitoring.checks.plan import CheckPlan
from crackseg.utils.deployment.monitoring.flapping import FlapDetector
from crackseg.utils.deployment.monitoring.rules import (
    DEFAULT_THRESHOLDS,
    AlertTracker,
    LifecycleSettings,
)
from crackseg.utils.deployment.monitoring.uptime import is_degraded, is_up
from crackseg.utils.deployment.monitoring.version import reported
from crackseg.utils.deployment.redact import redact_url

__all__ = [
    "FLAPPING",
    "MIN_ERROR_RATE_SAMPLES",
    "MonitoredDeployment",
    "ThresholdDict",
    "alert_dict",
    "metrics_dict",
]


# Error rate needs a few checks before it means anything.
MIN_ERROR_RATE_SAMPLES = 3
_WINDOW_MAX = 10_000
FLAPPING = "deployment_flapping"


class ThresholdDict(dict[str, float]):
    """``alert_thresholds``: a dict that refuses values that cannot be thresholds.

    ``version`` grows with every change, so merged per-deployment limits are rebuilt only
    when the thresholds changed, not on every check.
    """

    def __init__(self, data: Mapping[str, Any] | None = None, field_name: str = "alert_thresholds"):
        super().__init__()
        self._field = field_name
        self.version = 0
        for k, v in (data or {}).items():
            self[k] = v

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in DEFAULT_THRESHOLDS:
            raise ConfigError(
                f"{self._field}[{key!r}]",
                f"unknown threshold; use one of {', '.join(sorted(DEFAULT_THRESHOLDS))}",
            )
        require_positive(f"{self._field}[{key!r}]", value, allow_zero=True)
        super().__setitem__(key, float(value))
        self.version += 1

    def update(self, *args: Any, **kwargs: Any) -> None:
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def __ior__(self, other: Any) -> ThresholdDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> float:
        if key not in self:
            self[key] = default
        return self[key]

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version += 1

    def pop(self, key: str, *default: Any) -> Any:
        self.version += 1
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, float]:
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self.version += 1


@dataclass
class MonitoredDeployment:
    deployment_id: str
    url: str
    process_name: str | None
    interval: float
    timeout: float
    thresholds: dict[str, float]
    settings: LifecycleSettings
    metadata: DeploymentMetadata
    #: Its compiled check when more than the checker's plain GET (None: the default).
    plan: CheckPlan | None = None
    #: The status page's heading for it, and whether the public view may show it.
    group: str | None = None
    public: bool = False
    tracker: AlertTracker = field(init=False)
    # The last result's fields, not the result: a result kept until the next check survives
    # into the GC's oldest generation, and at 100,000 deployments those survivors made full
    # collections of two million objects run every few seconds (issue 14).
    last_status: str | None = None
    last_response_ms: float | None = None
    last_check: float | None = None
    last_error: str | None = None
    last_metrics: ResourceMetrics | None = None
    process_running: bool | None = None
    #: The version the last answer that carried one reported (its body's ``version``).
    last_version: str | None = None
    total: int = 0
    up: int = 0
    degraded: int = 0
    #: Checks skipped because a blocking custom checker still ran the previous one.
    busy_checks: int = 0
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    window: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=_WINDOW_MAX))
    window_failures: int = 0
    #: Per alert type, the keys of the handlers its firing was handed to: its resolve goes
    #: to exactly these, and an alert nobody was told about resolves silently.
    notified: dict[str, set[str]] = field(default_factory=dict)
    public_url: str = field(init=False)
    #: The compiled check as shown (secrets masked), in the configuration snapshots.
    check_shown: dict[str, Any] | None = field(init=False)
    #: The checker's reusable carrier of this deployment's checks (task-free path), and
    #: when the check in flight started and how stalled the loop was then.
    probe: Any = None
    check_started: float = 0.0
    check_stalled: float = 0.0
    #: (shared thresholds, their version, own thresholds, the two merged): see limits().
    _limits: tuple[ThresholdDict, int, dict[str, float], dict[str, float]] | None = None

    def __post_init__(self) -> None:
        self.tracker = AlertTracker(self.deployment_id)
        self.public_url = redact_url(self.url)  # once: statuses are read far more than written
        self.check_shown = self.plan.explain() if self.plan is not None else None  # once, too

    @property
    def flapping(self) -> AlertEvent | None:
        return self.tracker.firing(FLAPPING)

    def same_check(self, url: str, process_name: str | None, plan: CheckPlan | None = None) -> bool:
        """Whether a re-add watches the same thing, so alerts and counters carry over."""
        return self.url == url and self.process_name == process_name and self.plan == plan

    def update(
        self,
        interval: float,
        timeout: float,
        thresholds: dict[str, float],
        settings: LifecycleSettings,
        metadata: DeploymentMetadata,
    ) -> None:
        """New settings for the same check: alerts, counters and windows are kept."""
        self.interval, self.timeout = interval, timeout
        self.thresholds, self.settings, self.metadata = thresholds, settings, metadata

    def limits(self, shared: ThresholdDict) -> dict[str, float]:
        """The shared thresholds overridden by this deployment's own; rebuilt on change only."""
        c = self._limits
        if c is None or c[0] is not shared or c[1] != shared.version or c[2] is not self.thresholds:
            merged = {**shared, **self.thresholds}
            self._limits = c = (shared, shared.version, self.thresholds, merged)
        return c[3]

    def config(self) -> dict[str, Any]:
        return {
            "health_check_url": self.public_url,
            "process_name": self.process_name,
            "check_interval": self.interval,
            "timeout": self.timeout,
            "thresholds": dict(self.thresholds),
            "failure_threshold": self.settings.failure_threshold,
            "success_threshold": self.settings.success_threshold,
            "repeat_interval": self.settings.repeat_interval,
            "group": self.group,
            "public": self.public,
            **({"check": dict(self.check_shown)} if self.check_shown is not None else {}),
        }

    def count(self, result: HealthCheckResult, now_mono: float, window_s: float) -> float | None:
        """Add one result to the counters; return the error rate over the window (None if too few)."""
        # Errors of the error rate are checks that are not up (uptime.py: degraded answers).
        status = result.status
        ok = is_up(status)
        self.total += 1
        if ok:
            self.up += 1
            if is_degraded(status):
                self.degraded += 1
            version = reported(result)
            if version is not None:
                self.last_version = version
        # Consecutive failures feed the health rule, which alerts on degraded (a warning).
        if result.success:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
        win = self.window
        if len(win) == win.maxlen and not win[0][1]:
            self.window_failures -= 1
        win.append((now_mono, ok))
        self.window_failures += 0 if ok else 1
        horizon = now_mono - window_s
        while win and win[0][0] < horizon:
            if not win.popleft()[1]:
                self.window_failures -= 1
        self.last_status = status
        self.last_response_ms = result.response_time_ms
        self.last_check = result.timestamp
        self.last_error = result.error_message
        if len(win) < MIN_ERROR_RATE_SAMPLES:
            return None
        return self.window_failures * 100.0 / len(win)

    def judge_flapping(
        self,
        flaps: FlapDetector,
        status: str,
        now_mono: float,
        now: float,
        events: list[AlertEvent],
    ) -> list[AlertEvent]:
        """Add a flapping transition to ``events`` (the monitor holds back health firings
        while it fires)."""
        flapping = flaps.record(self.deployment_id, status, now_mono)
        if not flapping and not self.tracker.tracking:
            return events  # not flapping, and no alert state: nothing to end
        current = self.flapping
        if flapping and current is None:
            event = AlertEvent(
                self.deployment_id,
                FLAPPING,
                "warning",
                "firing",
                f"health changes state more than {flaps.max_changes} times in {flaps.window_s:g}s",
                float(flaps.max_changes),
                None,
                started_at=now,
                timestamp=now,
            )
            self.tracker.open(event)
            events = [*events, event]
        elif not flapping and current is not None:
            events = [*events, self._end_flapping(now, "health is stable again")]
        return events

    def _end_flapping(self, now: float, reason: str) -> AlertEvent:
        started = self.tracker.close(FLAPPING)
        assert started is not None
        return AlertEvent(
            self.deployment_id,
            FLAPPING,
            "warning",
            "resolved",
            reason,
            None,
            None,
            started_at=started.started_at,
            timestamp=now,
            resolved_at=now,
        )

    def resolve_all(self, now: float, reason: str) -> list[AlertEvent]:
        """Resolve every firing alert, flapping included (monitoring of it ends)."""
        return self.tracker.resolve_all(now, reason)

    def active_alerts(self) -> list[AlertEvent]:
        return self.tracker.active()

    def status(self, monitoring_active: bool) -> dict[str, Any]:
        n = len(self.window)
        return {
            "deployment_id": self.deployment_id,
            "health_check_url": self.public_url,
            "process_name": self.process_name,
            "check_interval": self.interval,
            "health_status": self.last_status or HealthStatus.UNKNOWN.value,
            "response_time_ms": self.last_response_ms,
            "last_check": self.last_check,
            "last_error": self.last_error,
            "resource_metrics": metrics_dict(self.last_metrics) if self.last_metrics else None,
            "process_running": self.process_running,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes,
            "error_rate_percent": round(self.window_failures * 100.0 / n, 3) if n else None,
            "uptime_percent": round(self.up * 100.0 / self.total, 3) if self.total else None,
            "degraded_percent": (
                round(self.degraded * 100.0 / self.total, 3) if self.total else None
            ),
            "version": self.last_version,
            "total_checks": self.total,
            "busy_checks": self.busy_checks,
            "active_alerts": [alert_dict(a) for a in self.active_alerts()],
            "flapping": self.flapping is not None,
            "monitoring_active": monitoring_active,
            "group": self.group,
            "public": self.public,
        }


def metrics_dict(m: ResourceMetrics) -> dict[str, Any]:
    # dataclasses.asdict deep-copies recursively: ten times slower on the status path.
    return {
        "cpu_usage_percent": m.cpu_usage_percent,
        "memory_usage_mb": m.memory_usage_mb,
        "disk_usage_percent": m.disk_usage_percent,
        "network_io_mbps": m.network_io_mbps,
        "timestamp": m.timestamp,
        "process_name": m.process_name,
        "process_count": m.process_count,
        "pids": list(m.pids),
    }


def alert_dict(a: AlertEvent) -> dict[str, Any]:
    return {
        "deployment_id": a.deployment_id,
        "alert_type": a.alert_type,
        "severity": a.severity,
        "message": a.message,
        "value": a.value,
        "threshold": a.threshold,
        "started_at": a.started_at,
    }
