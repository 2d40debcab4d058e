"""The API's answers as pydantic models: the OpenAPI document describes them, and
:func:`check_response` holds every answer to them (tests switch it on for every server).

Times are Unix seconds with an RFC 3339 copy beside them (``<name>_rfc3339``, UTC, made by
:func:`.operations.stamp`). Every list is one page: ``next_cursor`` (null on the last page) is
passed back as ``cursor`` for the next one. Models refuse unknown keys, so a key a handler
adds without describing it here fails the suite rather than drifting from the document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crackseg.utils.deployment.service.web.problems import Problem

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertEventPage",
    "AlertPage",
    "DeadLetter",
    "DeploymentPage",
    "DeploymentRecord",
    "DeploymentRecordPage",
    "DeploymentStatus",
    "EngineHealth",
    "HandlerStats",
    "HealthCheck",
    "History",
    "Liveness",
    "NotificationReport",
    "Problem",
    "Requeued",
    "ResourceSample",
    "Silence",
    "SilencePage",
    "StateChange",
    "Totals",
]

_Health = Literal["healthy", "degraded", "unhealthy", "unknown"]
_Severity = Literal["info", "warning", "critical"]
_Rfc3339 = str | None
_CURSOR = "pass as `cursor` for the next page; null on the last page"


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceSample(_Answer):
    """CPU, memory, disk and network use of a deployment's processes (or the machine)."""

    cpu_usage_percent: float
    memory_usage_mb: float
    disk_usage_percent: float
    network_io_mbps: float = Field(description="megabits per second")
    timestamp: float
    timestamp_rfc3339: _Rfc3339 = None
    process_name: str | None = Field(None, description="absent for the machine")
    process_count: int | None = None
    pids: list[int] = Field(default_factory=list)


class Alert(_Answer):
    """An alert firing now."""

    deployment_id: str
    alert_type: str = Field(examples=["health_check_failed"])
    severity: _Severity
    message: str = Field(description="secrets redacted")
    value: float | None
    threshold: float | None
    started_at: float
    started_at_rfc3339: _Rfc3339 = None


class DeploymentStatus(_Answer):
    """What the monitor knows of one monitored deployment now."""

    deployment_id: str
    health_check_url: str = Field(description="passwords and secret-looking values redacted")
    process_name: str | None
    check_interval: float
    health_status: _Health
    response_time_ms: float | None
    last_check: float | None
    last_check_rfc3339: _Rfc3339 = None
    last_error: str | None
    resource_metrics: ResourceSample | None
    process_running: bool | None
    consecutive_failures: int
    consecutive_successes: int
    error_rate_percent: float | None = Field(
        description="share of checks not up (degraded answers are up) in the error-rate window"
    )
    uptime_percent: float | None = Field(description="since monitoring began in this process")
    degraded_percent: float | None
    version: str | None = Field(description="the version the last answer reported")
    total_checks: int
    busy_checks: int = Field(description="checks skipped: a blocking checker still ran")
    active_alerts: list[Alert]
    flapping: bool
    group: str | None = Field(description="the group it is shown under on the page")
    public: bool = Field(description="shown on the public view (/status) and its badges")
    monitoring_active: bool
    uptime_24h_percent: float | None = Field(description="checks up over 24 h (hourly buckets)")
    uptime_7d_percent: float | None = Field(description="checks up over 7 days")


class DeploymentPage(_Answer):
    """One page of monitored deployments, sorted by id."""

    deployments: list[DeploymentStatus]
    count: int = Field(description="deployments on this page")
    next_cursor: str | None = Field(description=_CURSOR)
    monitoring_active: bool
    generated_at: float
    generated_at_rfc3339: str
    host: ResourceSample | None = Field(description="the machine's latest use; null before one")


class HealthCheck(_Answer):
    """One health check's result."""

    success: bool
    status: _Health
    response_time_ms: float
    timestamp: float
    timestamp_rfc3339: _Rfc3339 = None
    error_message: str | None
    details: dict[str, Any]


class History(_Answer):
    """Checks and resource samples of one deployment, oldest first; one page of at most
    ``limit`` of each, the newest in the window (``next_cursor`` pages back in time)."""

    deployment_id: str
    health: list[HealthCheck]
    resources: list[ResourceSample]
    next_cursor: str | None = Field(description=_CURSOR + " (older rows)")


class AlertPage(_Answer):
    """Alerts firing now, by deployment id."""

    alerts: list[Alert]
    count: int
    next_cursor: str | None = Field(description=_CURSOR)


class AlertEvent(_Answer):
    """A transition of an alert: it fired, was repeated, or resolved."""

    deployment_id: str
    alert_type: str
    severity: _Severity
    state: Literal["firing", "resolved"]
    message: str
    value: float | None
    threshold: float | None
    started_at: float
    started_at_rfc3339: _Rfc3339 = None
    timestamp: float
    timestamp_rfc3339: _Rfc3339 = None
    resolved_at: float | None
    resolved_at_rfc3339: _Rfc3339 = None
    repeat: bool
    suppressed_reason: str | None = Field(description="why no one was notified, if no one was")
    notified: list[str] = Field(
        default_factory=list, description="keys of the handlers this transition was sent to"
    )


class AlertEventPage(_Answer):
    """Alert transitions, newest first."""

    events: list[AlertEvent]
    count: int
    next_cursor: str | None = Field(description=_CURSOR + " (older events)")


class StateChange(_Answer):
    """One step of a rollout, with when and why."""

    state: str
    timestamp: float
    timestamp_rfc3339: _Rfc3339 = None
    reason: str | None


class DeploymentRecord(_Answer):
    """An orchestrated deployment (its free-form ``extra`` is never shown)."""

    deployment_id: str
    artifact_id: str
    strategy: str
    state: str
    start_time: float
    start_time_rfc3339: _Rfc3339 = None
    end_time: float | None
    end_time_rfc3339: _Rfc3339 = None
    target_environment: str
    previous_deployment_id: str | None
    rollback_reason: str | None
    health_check_url: str | None
    deployment_url: str | None
    version: str | None
    error_message: str | None
    state_history: list[StateChange]


class DeploymentRecordPage(_Answer):
    """Rollout records, newest first."""

    rollouts: list[DeploymentRecord]
    count: int
    next_cursor: str | None = Field(description=_CURSOR + " (older rollouts)")


class Silence(_Answer):
    """A silence: alerts it matches notify no one until ``ends_at``."""

    id: str
    deployment_id: str | None
    alert_type: str | None
    starts_at: float
    starts_at_rfc3339: _Rfc3339 = None
    ends_at: float
    ends_at_rfc3339: _Rfc3339 = None
    comment: str
    created_by: str


class SilencePage(_Answer):
    """Active silences, by id."""

    silences: list[Silence]
    count: int
    next_cursor: str | None = Field(description=_CURSOR)


_counter = Field(ge=0)


class HandlerStats(_Answer):
    """Delivery counters of one alert handler; errors scrubbed of secrets."""

    name: str = Field(description="the handler's label, as in /metrics")
    key: str | None = Field(description="stable identity: retry by handler_key")
    kind: str | None = Field(examples=["webhook"])
    sent: int = _counter
    failed: int = _counter
    retried: int = _counter
    dead_lettered: int = _counter
    coalesced: int = _counter
    dropped: int = Field(ge=0, description="pushed out of a full queue")
    queued: int = Field(ge=0, description="waiting in the queue, retries included")
    dead_letters: int = Field(ge=0, description="dead letters held now (retryable)")
    last_error: str | None
    last_error_at: float | None
    last_error_at_rfc3339: _Rfc3339 = None
    channel: dict[str, Any] | None = Field(None, description="channel-specific counters")


class DeadLetter(_Answer):
    """A notification given up on (a permanent failure, or too many tries)."""

    id: int | None = Field(description="outbox row, when the dispatcher has an outbox")
    handler_key: str
    handler: str | None = Field(description="name of the handler; null if it was removed")
    deployment_id: str
    alert_type: str
    state: Literal["firing", "resolved"] | None
    event_id: str | None
    sequence: int | None
    created_at: float
    created_at_rfc3339: _Rfc3339 = None
    attempts: int
    last_error: str | None
    dead_at: float | None
    dead_at_rfc3339: _Rfc3339 = None


class Totals(_Answer):
    sent: int
    failed: int
    retried: int
    dead_lettered: int
    coalesced: int
    dropped: int
    queued: int
    dead_letters: int


class NotificationReport(_Answer):
    """Delivery counters per handler and one page of dead letters, newest first."""

    handlers: list[HandlerStats]
    totals: Totals
    dead_letters: list[DeadLetter]
    dead_letter_count: int = Field(description="all dead letters held, on any page")
    unrouted: int = Field(ge=0, description="notifications no handler's match accepted")
    next_cursor: str | None = Field(description=_CURSOR + " (older dead letters)")


class Requeued(_Answer):
    """Dead letters queued for delivery again."""

    requeued: int
    handler_key: str | None


class Liveness(_Answer):
    """Whether the check engine runs and keeps up (``/healthz``)."""

    status: Literal["ok", "stopped", "overloaded", "store_failing"]
    monitoring_active: bool
    reason: str | None = None
    rows_lost: int | None = None


class EngineHealth(_Answer):
    """The monitor in the spec's health format (``/health``)."""

    status: Literal["healthy", "unhealthy"]
    version: str
    issues: list[str] | None = None
