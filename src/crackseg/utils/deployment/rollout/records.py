"""Where a deployment's story goes: its record (the store), its events (the health
monitor's one door to the alert handlers) and, once it serves, the health monitor."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.rollout.config import DeploymentResult
from crackseg.utils.deployment.rollout.context import Release
from crackseg.utils.deployment.rollout.launchers import base_url, health_url
from crackseg.utils.deployment.rollout.routers.base import TrafficRouter
from crackseg.utils.deployment.rollout.targets.base import Instance

__all__ = ["Bookkeeping", "MonitorDoor", "release_view", "result_of", "snapshot"]

logger = logging.getLogger("crackseg.utils.deployment.orchestration")


class MonitorDoor(Protocol):
    """What a rollout hands to the health monitor: its events (the monitor's one door to
    the alert handlers) and the releases to watch once they serve.
    :class:`~..monitoring.monitor.DeploymentHealthMonitor` is one."""

    def notify(
        self,
        alert_type: str,
        metadata: DeploymentMetadata,
        severity: str,
        message: str,
        started_at: float | None = None,
    ) -> list[str]: ...

    def add_deployment_monitoring(
        self,
        deployment_id: str,
        health_check_url: str,
        *,
        check_interval: float,
        failure_threshold: int | None,
        metadata: DeploymentMetadata | None,
    ) -> None: ...

    def remove_deployment_monitoring(self, deployment_id: str) -> bool: ...


def snapshot(meta: DeploymentMetadata) -> DeploymentMetadata:
    """A copy for other threads and stores (the live record keeps changing)."""
    return DeploymentMetadata.from_dict(meta.to_dict())


def release_view(r: Release | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "deployment_id": r.deployment_id,
        "version": r.version,
        "slot": r.slot,
        "instances": [i.address for i in r.instances],
    }


def result_of(
    meta: DeploymentMetadata,
    serving: list[Instance],
    router: TrafficRouter,
    success: bool,
    rolled_back: bool = False,
    error: str | None = None,
) -> DeploymentResult:
    """What ``deploy_with_strategy`` answers: where the version serves and how it ended."""
    url = router.public_url or (base_url(serving[0]) if serving else meta.deployment_url)
    health = health_url(serving[0]) if success and serving else meta.health_check_url
    return DeploymentResult(
        success=success,
        deployment_id=meta.deployment_id,
        artifact_id=meta.artifact_id,
        target_environment=meta.target_environment,
        deployment_url=url,
        health_check_url=health,
        error_message=error or (None if success else meta.error_message),
        rolled_back=rolled_back,
        metadata=meta,
    )


class Bookkeeping:
    """Saves records, sends deployment events, hands serving releases to the monitor.

    Events go through the monitor (:meth:`~..monitoring.monitor.DeploymentHealthMonitor.notify`), so they reach
    the same handlers as the monitor's own alerts, each in its own worker thread. Thread-safe.
    """

    def __init__(self, monitor: MonitorDoor, store: HistoryStore) -> None:
        self.health_monitor = monitor
        self.store = store
        self._lock = threading.Lock()
        self._monitored: dict[str, list[str]] = {}  # deployment id -> monitor ids

    def save(self, meta: DeploymentMetadata) -> None:
        try:
            self.store.save_deployment(snapshot(meta))
        except Exception:
            # History is a record, not a control path: a broken store must not strand a rollout.
            logger.exception("could not save deployment %s", meta.deployment_id)

    def alert(self, alert_type: str, meta: DeploymentMetadata, severity: str, message: str) -> None:
        # The monitor's one door to the handlers: the same facts as its own alerts.
        self.health_monitor.notify(alert_type, snapshot(meta), severity, message, meta.start_time)

    def monitor(
        self, release: Release, meta: DeploymentMetadata, replaced: Release | None
    ) -> list[str]:
        """Monitor each replica of ``release`` (the first under the deployment id, the others
        as ``<id>#<n>``) and stop monitoring the release it ``replaced``; returns the ids."""
        if replaced is not None:
            with self._lock:
                old = self._monitored.pop(replaced.deployment_id, [])
            for monitor_id in old:
                self.health_monitor.remove_deployment_monitoring(monitor_id)
        urls = [health_url(i) for i in release.instances]
        if not urls and release.config.health_check_url:
            urls = [release.config.health_check_url]
        ids = [release.deployment_id] + [
            f"{release.deployment_id}#{k}" for k in range(1, len(urls))
        ]
        for monitor_id, url in zip(ids, urls, strict=False):
            self.health_monitor.add_deployment_monitoring(
                monitor_id,
                url,
                check_interval=release.config.monitor_interval,
                failure_threshold=release.config.failure_threshold,
                metadata=snapshot(meta),
            )
        with self._lock:
            self._monitored[release.deployment_id] = ids[: len(urls)]
        return ids[: len(urls)]
