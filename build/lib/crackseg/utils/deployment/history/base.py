"""Where history lives: the :class:`HistoryStore` interface.

The monitor and the orchestrator write through this interface only, so the memory and SQLite
stores plug in without either knowing. Histories are bounded.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from crackseg.utils.deployment.models import (
    AlertEvent,
    DeploymentMetadata,
    HealthCheckResult,
    ResourceMetrics,
)

__all__ = ["HistoryStore"]


@runtime_checkable
class HistoryStore(Protocol):
    """Health results, resource samples, alert events and deployment records.

    Every method is thread-safe. Reads return oldest first. ``since``/``until`` are Unix
    timestamps; ``limit`` keeps the newest ``limit`` rows.
    """

    def add_health(self, deployment_id: str, result: HealthCheckResult) -> None: ...

    def add_resource(self, deployment_id: str, metrics: ResourceMetrics) -> None: ...

    def add_alert(self, event: AlertEvent) -> None: ...

    def health_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HealthCheckResult]: ...

    def resource_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[ResourceMetrics]: ...

    def alert_history(
        self,
        deployment_id: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]: ...

    def save_deployment(self, metadata: DeploymentMetadata) -> None: ...

    def deployment_records(self, artifact_id: str | None = None) -> list[DeploymentMetadata]: ...

    def forget(self, deployment_id: str) -> None:
        """Drop the in-memory history of a deployment no longer monitored."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None: ...
