"""The orchestrator's side of the post-promotion guard (see :mod:`.guard`): one guard per
environment, started at promotion, ended by the next deployment, and the rollback it trips.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.rollout.environment import Environment
from crackseg.utils.deployment.rollout.guard import PromotionGuard
from crackseg.utils.deployment.rollout.records import Bookkeeping
from crackseg.utils.deployment.rollout.routers.base import TrafficRouter
from crackseg.utils.deployment.rollout.strategies.base import ProgressFn, Release
from crackseg.utils.deployment.rollout.targets.base import Instance

if TYPE_CHECKING:
    from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor
    from crackseg.utils.deployment.rollout.config import DeploymentResult

__all__ = ["GuardedPromotions"]


class GuardedPromotions:
    """Mixed into :class:`~.orchestrator.DeploymentOrchestrator`, which provides the state
    declared here and :meth:`_manual_rollback` / :meth:`_router`."""

    health_monitor: DeploymentHealthMonitor
    _lock: threading.RLock
    _guards: dict[str, PromotionGuard]
    _records: Mapping[str, DeploymentMetadata]
    _book: Bookkeeping
    _progress: ProgressFn | None

    def _router(self, env: str) -> TrafficRouter:
        raise NotImplementedError

    def _manual_rollback(
        self, env: Environment, meta: DeploymentMetadata, reason: str = ...
    ) -> DeploymentResult:
        raise NotImplementedError

    def _start_guard(
        self, env: Environment, release: Release, meta: DeploymentMetadata, monitor_ids: list[str]
    ) -> None:
        guard = PromotionGuard(
            deployment_id=meta.deployment_id,
            config=release.config,
            monitor=self.health_monitor,
            monitor_ids=monitor_ids,
            router=self._router(env.name),
            addresses=[i.address for i in release.instances],
            trip=lambda reason: self._guard_trip(env, meta, reason),
            on_progress=self._progress,
        )
        with self._lock:
            self._guards[env.name] = guard
        meta.extra["guard"] = guard.view()
        self._book.save(meta)
        guard.start()

    def _end_guard(self, env_name: str) -> None:
        with self._lock:
            guard = self._guards.pop(env_name, None)
        if guard is None:
            return
        guard.stop()
        meta = self._records.get(guard.deployment_id)
        if meta is not None and "guard" in meta.extra:
            meta.extra["guard"] = guard.view()
            self._book.save(meta)

    def _guard_trip(self, env: Environment, meta: DeploymentMetadata, reason: str) -> None:
        with self._lock:
            guard = self._guards.get(env.name)
        while not env.lock.acquire(timeout=0.2):
            if guard is None or guard.state != "tripped" or self._guards.get(env.name) is not guard:
                return  # ended meanwhile: a new deployment owns the environment
        try:
            meta.extra["guard"] = {**meta.extra.get("guard", {}), "state": "tripped"}
            current = env.current
            if current is not None and current.deployment_id == meta.deployment_id:
                self._manual_rollback(env, meta, reason)
        finally:
            env.lock.release()

    def _drop_backups(self, env_name: str, instances: list[Instance]) -> None:
        """Take kept-warm old instances out of the router before they stop."""
        router = self._router(env_name)
        gone = {i.address for i in instances}
        current = router.current()
        keep = [b for b in current if not (b.backup and b.address in gone)]
        if len(keep) != len(current) and keep:
            router.apply(keep)
