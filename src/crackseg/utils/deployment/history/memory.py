"""The in-memory history store: bounded per deployment, thread-safe.

The monitor and the orchestrator write through this interface only, so the SQLite store
(:mod:`.sqlite_store`) plugs in without either knowing. Histories are bounded.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Protocol, TypeVar

from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.models import (
    AlertEvent,
    DeploymentMetadata,
    HealthCheckResult,
    ResourceMetrics,
)

__all__ = ["HistoryStore", "MemoryStore"]


class _Timed(Protocol):
    timestamp: float


_T = TypeVar("_T", bound=_Timed)


def _window(
    rows: Iterable[_T], since: float | None, until: float | None, limit: int | None
) -> list[_T]:
    out = [
        r
        for r in rows
        if (since is None or r.timestamp >= since) and (until is None or r.timestamp <= until)
    ]
    if limit is not None:
        out = out[-limit:] if limit > 0 else []
    return out


class MemoryStore:
    """Bounded in-memory history: the library's default store.

    ``max_history`` bounds health results and resource samples per deployment,
    ``max_alerts`` the alert events, ``max_deployments`` the deployment records.
    """

    def __init__(
        self, max_history: int = 1000, max_alerts: int = 10_000, max_deployments: int = 10_000
    ) -> None:
        self.max_history = max_history
        self._lock = threading.Lock()
        self._health: dict[str, deque[HealthCheckResult]] = {}
        self._resources: dict[str, deque[ResourceMetrics]] = {}
        self._alerts: deque[AlertEvent] = deque(maxlen=max_alerts)
        self._deployments: dict[str, DeploymentMetadata] = {}
        self._max_deployments = max_deployments
        self._details: dict[tuple[tuple[str, object], ...], dict[str, object]] = {}

    def add_health(self, deployment_id: str, result: HealthCheckResult) -> None:
        with self._lock:
            self._intern_details(result)
            q = self._health.get(deployment_id)
            if q is None:
                q = self._health[deployment_id] = deque(maxlen=self.max_history)
            q.append(result)

    def _intern_details(self, result: HealthCheckResult) -> None:
        # Nearly every result carries the same small details ({"http_status": 200}); one
        # shared dict instead of one each halves the memory of a full history. Treat stored
        # results' details as read-only.
        d = result.details
        if not d or len(d) > 4:
            return
        try:
            key = tuple(d.items())
            shared = self._details.get(key)
        except TypeError:  # an unhashable value: keep the result's own dict
            return
        if shared is None:
            if len(self._details) >= 1024:
                return
            shared = self._details[key] = dict(d)
        result.details = shared

    def add_resource(self, deployment_id: str, metrics: ResourceMetrics) -> None:
        with self._lock:
            q = self._resources.get(deployment_id)
            if q is None:
                q = self._resources[deployment_id] = deque(maxlen=self.max_history)
            elif q and metrics.pids and q[-1].pids == metrics.pids:
                # The same processes sample after sample: share one tuple, not one each.
                metrics.pids = q[-1].pids
            q.append(metrics)

    def add_alert(self, event: AlertEvent) -> None:
        with self._lock:
            self._alerts.append(event)

    def health_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HealthCheckResult]:
        with self._lock:
            rows = list(self._health.get(deployment_id, ()))
        return _window(rows, since, until, limit)

    def resource_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[ResourceMetrics]:
        with self._lock:
            rows = list(self._resources.get(deployment_id, ()))
        return _window(rows, since, until, limit)

    def alert_history(
        self,
        deployment_id: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]:
        with self._lock:
            rows = [
                a for a in self._alerts if deployment_id is None or a.deployment_id == deployment_id
            ]
        return _window(rows, since, None, limit)

    def save_deployment(self, metadata: DeploymentMetadata) -> None:
        with self._lock:
            self._deployments.pop(metadata.deployment_id, None)
            self._deployments[metadata.deployment_id] = metadata
            while len(self._deployments) > self._max_deployments:
                self._deployments.pop(next(iter(self._deployments)))

    def deployment_records(self, artifact_id: str | None = None) -> list[DeploymentMetadata]:
        with self._lock:
            rows = list(self._deployments.values())
        rows.sort(key=lambda m: m.start_time)
        return [m for m in rows if artifact_id is None or m.artifact_id == artifact_id]

    def forget(self, deployment_id: str) -> None:
        with self._lock:
            self._health.pop(deployment_id, None)
            self._resources.pop(deployment_id, None)

    def flush(self) -> None:
        """Nothing to flush: memory is the store."""

    def close(self) -> None:
        """Nothing to release."""
