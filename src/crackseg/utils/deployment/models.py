"""Values shared by every part of the package: check results, metrics, alerts, deployments.

Results are values, not log lines: a check yields a :class:`HealthCheckResult`, a sample a
:class:`ResourceMetrics`, an alert transition an :class:`AlertEvent`. Each has ``to_dict()``
giving the spec's export format.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "MONITOR_ID",
    "ROLLOUT_EVENTS",
    "AlertEvent",
    "AlertSeverity",
    "AlertState",
    "DeploymentMetadata",
    "DeploymentState",
    "DeploymentStrategy",
    "HealthCheckResult",
    "HealthStatus",
    "ResourceMetrics",
    "StateChange",
]

#: The deployment id of the monitor's own alerts (overloaded, a store losing writes).
MONITOR_ID = "crackseg-monitor"
#: The alert types of rollout events (the orchestrator's), beside the monitor's alerts.
ROLLOUT_EVENTS = frozenset(
    {
        "deployment_started",
        "deployment_success",
        "deployment_failure",
        "rollback_triggered",
        "rollback_completed",
    }
)


class HealthStatus(StrEnum):
    """Health of one check or one deployment."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class DeploymentStrategy(StrEnum):
    """How a new version replaces the old one."""

    BLUE_GREEN = "blue_green"
    CANARY = "canary"
    ROLLING = "rolling"
    RECREATE = "recreate"


class DeploymentState(StrEnum):
    """Where a deployment is in its lifecycle."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    HEALTH_CHECKING = "health_checking"
    SUCCESS = "success"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


@dataclass(slots=True)
class HealthCheckResult:
    """Outcome of one health check.

    ``success`` is True only for a healthy answer; ``status`` tells healthy, degraded or
    unhealthy apart; ``details`` carries facts such as ``http_status``.

    >>> HealthCheckResult(success=True, status="healthy", response_time_ms=1.5).to_dict()["status"]
    'healthy'
    """

    success: bool
    status: str
    response_time_ms: float
    timestamp: float = field(default_factory=time.time)
    error_message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ResourceMetrics:
    """One sample of CPU, memory, disk and network use (system-wide or for one process).

    ``cpu_usage_percent`` and ``network_io_mbps`` are rates over the interval since the
    previous sample (megabits per second for the network), never totals since boot.
    ``process_count`` and ``pids`` are set for process samples.
    """

    cpu_usage_percent: float
    memory_usage_mb: float
    disk_usage_percent: float
    network_io_mbps: float
    timestamp: float = field(default_factory=time.time)
    process_name: str | None = None
    process_count: int | None = None
    pids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pids"] = list(self.pids)
        return d


@dataclass(slots=True)
class AlertEvent:
    """A transition of one alert: it started firing, it is repeated, or it resolved."""

    deployment_id: str
    alert_type: str
    severity: str
    state: str
    message: str
    value: float | None
    threshold: float | None
    started_at: float
    timestamp: float = field(default_factory=time.time)
    resolved_at: float | None = None
    repeat: bool = False
    suppressed_reason: str | None = None
    #: Keys of the handlers this transition was sent to (empty when held back or unrouted):
    #: what was sent is remembered with the event, so an incident can say who was told.
    notified: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StateChange:
    """One step of a deployment's life, with when and why."""

    state: str
    timestamp: float = field(default_factory=time.time)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeploymentMetadata:
    """What is known of one deployment; handed to every :class:`AlertHandler`.

    Alerts raised by the monitor for a deployment it watches carry a metadata whose
    ``deployment_id`` is the monitored id and whose ``artifact_id`` may be empty.
    """

    deployment_id: str
    artifact_id: str = ""
    strategy: str = ""
    state: str = DeploymentState.PENDING.value
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None
    target_environment: str = ""
    previous_deployment_id: str | None = None
    rollback_reason: str | None = None
    health_check_url: str | None = None
    deployment_url: str | None = None
    version: str | None = None
    error_message: str | None = None
    state_history: list[StateChange] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def set_state(self, state: DeploymentState | str, reason: str | None = None) -> None:
        """Move to ``state``, recording when and why."""
        self.state = str(state)
        self.state_history.append(StateChange(self.state, time.time(), reason))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentMetadata:
        data = dict(data)
        history = [StateChange(**h) for h in data.pop("state_history", [])]
        meta = cls(**data)
        meta.state_history = history
        return meta
