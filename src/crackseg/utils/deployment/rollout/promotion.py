"""The orchestrator's post-promotion guards (see :mod:`.guard`): one per environment, started
at promotion, ended by the next deployment (or a rollback), and the rollback a guard trips.

:class:`Promotions` is an object the orchestrator owns; it is handed what it needs (the
alert source, the bookkeeping, a router per environment, the rollback to call) instead of
reaching into the orchestrator, so the two do not import each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.rollout.context import ProgressFn, Release
from crackseg.utils.deployment.rollout.environment import Environment
from crackseg.utils.deployment.rollout.guard import ActiveAlerts, PromotionGuard
from crackseg.utils.deployment.rollout.judging import Judging
from crackseg.utils.deployment.rollout.records import Bookkeeping
from crackseg.utils.deployment.rollout.routers.base import TrafficRouter

__all__ = ["Promotions", "RollbackFn"]

# (environment, the promoted deployment's record, reason): undo the promotion; called with
# the environment's lock held.
RollbackFn = Callable[[Environment, DeploymentMetadata, str], object]


class Promotions:
    """The guards of promoted releases, one per environment. Thread-safe.

    ``record_of(deployment_id)`` finds a live record (to store the guard's final state);
    ``rollback`` undoes a promotion whose guard tripped, if that release still serves.
    """

    def __init__(
        self,
        *,
        alerts: ActiveAlerts,
        book: Bookkeeping,
        router_for: Callable[[str], TrafficRouter],
        record_of: Callable[[str], DeploymentMetadata | None],
        rollback: RollbackFn,
        progress: ProgressFn | None = None,
    ) -> None:
        self._alerts = alerts
        self._book = book
        self._router_for = router_for
        self._record_of = record_of
        self._rollback = rollback
        self._progress = progress
        self._lock = threading.Lock()
        self._guards: dict[str, PromotionGuard] = {}

    def start(
        self,
        env: Environment,
        release: Release,
        meta: DeploymentMetadata,
        monitor_ids: list[str],
        judging: Judging | None = None,
    ) -> None:
        """Guard ``release`` (just promoted in ``env``) for its ``guard_seconds``; with the
        rollout's ``judging``, its traffic is judged by the same machinery, one-sample."""
        addresses = [i.address for i in release.instances]
        guard = PromotionGuard(
            deployment_id=meta.deployment_id,
            config=release.config,
            monitor=self._alerts,
            monitor_ids=monitor_ids,
            router=self._router_for(env.name),
            addresses=addresses,
            trip=lambda reason: self._trip(env, meta, reason, guard),
            on_progress=self._progress,
            judging=judging.after(addresses, time.time()) if judging is not None else None,
        )
        with self._lock:
            self._guards[env.name] = guard
        meta.extra["guard"] = guard.view()
        self._book.save(meta)
        guard.start()

    def end(self, env_name: str, deployment_id: str | None = None) -> None:
        """End the guard of ``env_name`` (only if it guards ``deployment_id``, when given)
        and store its final state."""
        with self._lock:
            guard = self._guards.get(env_name)
            if guard is None or deployment_id not in (None, guard.deployment_id):
                return
            del self._guards[env_name]
        guard.stop()
        meta = self._record_of(guard.deployment_id)
        if meta is not None and "guard" in meta.extra:
            meta.extra["guard"] = guard.view()
            self._book.save(meta)

    def _current(self, env_name: str) -> PromotionGuard | None:
        with self._lock:
            return self._guards.get(env_name)

    def _trip(
        self, env: Environment, meta: DeploymentMetadata, reason: str, guard: PromotionGuard
    ) -> None:
        while not env.lock.acquire(timeout=0.2):
            if guard.state != "tripped" or self._current(env.name) is not guard:
                return  # ended meanwhile: a new deployment owns the environment
        try:
            meta.extra["guard"] = guard.view()
            current = env.current
            if current is not None and current.deployment_id == meta.deployment_id:
                self._rollback(env, meta, reason)
        finally:
            env.lock.release()
