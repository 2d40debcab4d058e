"""Answers of the status page's own routes (heartbeats, ranges, incidents, maintenance, one
rollout's story, the public view) as pydantic models: the OpenAPI document describes them and
the answer check holds each answer to them, as :mod:`.models` does for the core API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crackseg.utils.deployment.service.web.models import DeploymentRecord

__all__ = [
    "Beat",
    "Buckets",
    "Heartbeats",
    "Incident",
    "IncidentList",
    "MaintenanceList",
    "MaintenanceWindow",
    "PublicDeployment",
    "PublicGroup",
    "PublicIncident",
    "PublicStatus",
    "RangeAnswer",
    "RolloutStory",
    "WeightPoint",
]

_Health = Literal["healthy", "degraded", "unhealthy", "unknown"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Beat(_Answer):
    """One deployment's last checks as columns, oldest first."""

    t: list[float] = Field(description="Unix time of each check")
    s: list[str] = Field(description="healthy, degraded, unhealthy or unknown")
    r: list[float] | None = Field(None, description="response time, ms")
    e: list[str | None] | None = Field(None, description="error (redacted)")


class Heartbeats(_Answer):
    """One page of deployments' last checks (the page's heartbeat bars), by deployment id."""

    limit: int
    heartbeats: dict[str, Beat]
    count: int = Field(description="deployments on this page")
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page of deployments; null on the last page"
    )


class Buckets(_Answer):
    """Columns, one value per bucket: start, count, response time (ms) statistics and the
    shares 0-1 of checks up, degraded and down."""

    t: list[float | None]
    count: list[float | None]
    min: list[float | None]
    max: list[float | None]
    mean: list[float | None]
    p50: list[float | None]
    p95: list[float | None]
    p99: list[float | None]
    up: list[float | None]
    degraded: list[float | None]
    down: list[float | None]


class RangeAnswer(_Answer):
    """A deployment's checks over a range, downsampled into equal buckets."""

    deployment_id: str
    range: str
    since: float
    until: float
    bucket_seconds: float
    checks: float
    buckets: Buckets


class Incident(_Answer):
    """An alert episode, from firing to resolve."""

    deployment_id: str
    alert_type: str
    title: str
    severity: str
    start: float
    end: float | None
    duration_seconds: float
    message: str | None
    repeats: int
    held_by: list[str] = Field(description="silences and maintenance windows that held it")
    notified: list[str] = Field(
        description="handlers its firing, reminders and resolve were sent to"
    )


class IncidentList(_Answer):
    """Alert episodes, newest first."""

    incidents: list[Incident]
    count: int
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page")


class MaintenanceWindow(_Answer):
    """A maintenance window: its schedule, whether open now, what it holds back now."""

    name: str
    deployments: list[str]
    days: list[str] | None
    start: str | None
    end: str | None
    timezone: str
    starts_at: float | None
    ends_at: float | None
    active: bool
    holding: list[str] = Field(
        description="deployments it holds back now, the first 100 by id (see holding_count)"
    )
    holding_count: int = Field(description="how many deployments it holds back now, in all")


class MaintenanceList(_Answer):
    """One page of the configured maintenance windows, in schedule order."""

    windows: list[MaintenanceWindow]
    count: int = Field(description="windows on this page")
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page of windows; null on the last page"
    )


class WeightPoint(_Answer):
    at: float
    new_percent: float


class RolloutStory(_Answer):
    """One rollout: its record, its steps (allow-listed, redacted), the new version's traffic
    share over time and the judge's evidence per look."""

    record: DeploymentRecord
    steps: list[dict[str, Any]]
    weights: list[WeightPoint]
    looks: list[dict[str, Any]]


class PublicDeployment(_Answer):
    id: str
    status: _Health
    uptime_24h_percent: float | None
    uptime_7d_percent: float | None
    heartbeat: Beat


class PublicGroup(_Answer):
    name: str | None
    deployments: list[PublicDeployment]


class PublicIncident(_Answer):
    deployment_id: str
    title: str
    severity: str
    start: float
    end: float | None


class PublicStatus(_Answer):
    """The public view: allow-listed fields of public deployments only, bounded (the first
    250 deployments, the newest 50 incidents; ``capped`` says when more exist)."""

    generated_at: float
    overall: str = Field(description="the worst status of every public deployment, listed or not")
    groups: list[PublicGroup]
    incidents: list[PublicIncident]
    deployments_total: int = Field(description="public deployments in all")
    incidents_total: int = Field(description="incidents of the listed deployments in all")
    capped: str | None = Field(
        description="what was left out, in words (the view is bounded); null when nothing"
    )
