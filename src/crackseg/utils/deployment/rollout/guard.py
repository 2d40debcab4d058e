"""The post-promotion guard: for a while after a version is promoted, what pages you rolls it back.

Argo Rollouts runs a finite ``postPromotionAnalysis`` right after the switch; here the
guard watches, for ``guard_seconds``, the health monitor's alerts on the promoted version
(:data:`GUARD_ALERTS`) and the traffic of its backends: where the rollout was judged on
counts (the router's log, the instances' counters, a Prometheus server), its sequential
judge, one-sample against the replaced version's figures from before the switch (no
hand-tuned threshold: only evidence of harm at level ``alpha``, or a version failing every
request, trips it), else the router's error rate. The first of them to fire trips the guard
once: the orchestrator puts traffic back on the previous version, kept warm for the window. A new deployment of the environment, :meth:`PromotionGuard.stop` or
the end of the window ends it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from crackseg.utils.deployment.errors import RouterError
from crackseg.utils.deployment.rollout.analysis import PerformanceSnapshot
from crackseg.utils.deployment.rollout.config import DeploymentConfig
from crackseg.utils.deployment.rollout.counters import MeasurementError
from crackseg.utils.deployment.rollout.gate import judge_analysis
from crackseg.utils.deployment.rollout.judging import Judging
from crackseg.utils.deployment.rollout.routers.base import TrafficRouter

__all__ = ["GUARD_ALERTS", "ROUTER_WINDOW_SECONDS", "ActiveAlerts", "PromotionGuard"]

logger = logging.getLogger("crackseg.utils.deployment.orchestration")

GUARD_ALERTS = frozenset(
    {"health_check_failed", "high_error_rate", "high_response_time", "process_not_running"}
)
# The router's error rate is judged over a sliding window this long (or since promotion).
ROUTER_WINDOW_SECONDS = 30.0


class ActiveAlerts(Protocol):
    """What the guard reads of the health monitor: its firing alerts, as
    :meth:`~..monitoring.monitor.DeploymentHealthMonitor.get_active_alerts` gives them."""

    def get_active_alerts(self) -> list[dict[str, Any]]: ...


class PromotionGuard:
    """Watches one promoted release; calls ``trip(reason)`` at most once, from its thread.

    ``monitor_ids`` are the health monitor's ids of the release's replicas; ``addresses``
    its backends at the router. ``state`` is ``watching``, then ``ended``, ``stopped`` or
    ``tripped``; ``on_progress(label, elapsed, total)`` is called as the window passes.
    """

    def __init__(
        self,
        *,
        deployment_id: str,
        config: DeploymentConfig,
        monitor: ActiveAlerts,
        monitor_ids: Sequence[str],
        router: TrafficRouter,
        addresses: Sequence[str],
        trip: Callable[[str], None],
        on_progress: Callable[[str, float, float], None] | None = None,
        judging: Judging | None = None,
    ) -> None:
        self.deployment_id = deployment_id
        self.config = config
        self.monitor = monitor
        self.monitor_ids = frozenset(monitor_ids)
        self.router = router
        self.addresses = list(addresses)
        self._trip = trip
        self._on_progress = on_progress
        self._stop = threading.Event()
        self.state = "watching"
        self.started_at = time.time()
        self.until = self.started_at + config.guard_seconds
        self.measure_errors = 0
        self.judging = judging
        self.evidence: dict[str, Any] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"guard-{deployment_id}", daemon=True
        )

    def start(self) -> None:
        logger.info(
            "%s: guarding for %.0f s after promotion", self.deployment_id, self.config.guard_seconds
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the watch (a later deployment, or close); waits for a trip in progress."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self.state == "watching":
            self.state = "stopped"

    @property
    def active(self) -> bool:
        return self.state == "watching" and self._thread.is_alive()

    def view(self) -> dict[str, Any]:
        out = {"state": self.state, "started_at": self.started_at, "until": self.until}
        return out | ({"evidence": self.evidence} if self.evidence is not None else {})

    def _run(self) -> None:
        total = self.config.guard_seconds
        start = time.monotonic()
        poll = min(0.25, self.config.check_interval)
        while not self._stop.wait(poll):
            elapsed = time.monotonic() - start
            if elapsed >= total:
                self.state = "ended"
                logger.info("%s: guard window ended, no rollback", self.deployment_id)
                return
            if self._on_progress is not None:
                self._on_progress("guard", elapsed, total)
            reason = self._check()
            if reason is not None and not self._stop.is_set():
                self.state = "tripped"
                logger.warning("%s: %s", self.deployment_id, reason)
                try:
                    self._trip(reason)
                except Exception:
                    logger.exception("post-promotion rollback of %s failed", self.deployment_id)
                return

    def _check(self) -> str | None:
        for alert in self.monitor.get_active_alerts():
            if alert["deployment_id"] in self.monitor_ids and alert["alert_type"] in GUARD_ALERTS:
                return f"post-promotion: {alert['alert_type']}: {alert['message']}"
        if self.judging is not None:
            return self._judge(self.judging)
        if not self.router.measures_traffic or not self.addresses:
            return None
        since = max(self.started_at, time.time() - ROUTER_WINDOW_SECONDS)
        try:
            stats = self.router.measure(self.addresses, since)
        except Exception as exc:
            self._measure_failed(exc)
            return None
        if stats is None or not stats.requests:
            return None
        snap = PerformanceSnapshot(
            "router",
            stats.window_seconds,
            requests=stats.requests,
            errors=stats.errors,
            error_rate_percent=100.0 * stats.errors / stats.requests,
            p95_ms=stats.p95_ms,
        )
        snap.enough_data = stats.requests >= self.config.min_samples
        g = judge_analysis(snap, None, self.config.criteria)
        return f"post-promotion: router: {g.reason}" if g.failed else None

    def _judge(self, judging: Judging) -> str | None:
        """The sequential judge, one-sample against the replaced version's figures: only
        evidence of harm (or a version failing every request) trips the guard."""
        try:
            j = judging.look()
        except (RouterError, MeasurementError) as exc:
            self._measure_failed(exc)
            return None
        broken = judging.broken()
        if broken is None and not j.failed:
            return None
        self.evidence = judging.view()
        why = f"plainly broken: {broken}" if broken else j.reason
        return f"post-promotion: {judging.reader.source}: {why}"

    def _measure_failed(self, exc: Exception) -> None:
        # A broken measurement decides nothing: said in the log, counted, not a rollback.
        self.measure_errors += 1
        if self.measure_errors in (1, 10, 100):
            logger.warning("%s: guard cannot measure traffic: %s", self.deployment_id, exc)
