"""The monitor: deployments checked on their intervals, resources sampled, alerts raised.

Public through :mod:`crackseg.utils.deployment.health_monitoring`, which holds the usage example.
The facade: its public methods; a check's way is in :mod:`.checkpath`, an alert's in
:mod:`.alerting` (rollout events too, through :meth:`DeploymentHealthMonitor.notify`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Unpack

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.dispatcher import AlertDispatcher
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.history.alert_state import AlertStateStore
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.models import (
    AlertEvent,
    DeploymentMetadata,
    HealthCheckResult,
    ResourceMetrics,
)
from crackseg.utils.deployment.monitoring import export as _export
from crackseg.utils.deployment.monitoring.alerting import (
    MONITOR_ID,
    OVERLOADED,
    AlertPath,
    Suppressor,
)
from crackseg.utils.deployment.monitoring.checkpath import CheckPath, ResultListener
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from crackseg.utils.deployment.monitoring.flapping import FlapDetector
from crackseg.utils.deployment.monitoring.resources.base import ResourceMonitor
from crackseg.utils.deployment.monitoring.resources.psutil_monitor import DefaultResourceMonitor
from crackseg.utils.deployment.monitoring.rules import LifecycleSettings
from crackseg.utils.deployment.monitoring.settings import DEFAULTS, checked_settings
from crackseg.utils.deployment.monitoring.spec import CheckFields, DeploymentSpec
from crackseg.utils.deployment.monitoring.tracked import (
    MonitoredDeployment,
    ThresholdDict,
    alert_dict,
)
from crackseg.utils.deployment.redact import redact_url

__all__ = ["MONITOR_ID", "OVERLOADED", "DeploymentHealthMonitor", "ResultListener", "Suppressor"]

logger = logging.getLogger("crackseg.utils.deployment.health_monitoring")

# Statuses read per lock hold: ~3 ms at a time for 256, the checks' lock free in between.
_STATUS_CHUNK = 256


class DeploymentHealthMonitor:
    """Checks deployments on their intervals, samples their resources, raises alerts.

    One engine (an asyncio loop over a heap of deadlines) runs in a background thread after
    :meth:`start_monitoring`, or on your loop after :meth:`start_monitoring_async`. Every
    public method is safe to call from any thread.

    ``alert_thresholds`` may be mutated or replaced at any time; the next check uses it.
    Per-deployment ``thresholds`` override it. CPU and memory thresholds judge the
    deployment's process (``process_name``); without one they are not applied, since the
    whole machine's use is not one service's.
    """

    def __init__(
        self,
        health_checker: HealthChecker | None = None,
        resource_monitor: ResourceMonitor | None = None,
        *,
        store: HistoryStore | None = None,
        max_history: int = DEFAULTS.max_history,
        failure_threshold: int = DEFAULTS.failure_threshold,
        success_threshold: int = DEFAULTS.success_threshold,
        repeat_interval: float = DEFAULTS.repeat_interval,
        error_rate_window: float = DEFAULTS.error_rate_window,
        default_timeout: float = DEFAULTS.default_timeout,
        system_metrics_interval: float = DEFAULTS.system_metrics_interval,
        flap_max_changes: int | None = DEFAULTS.flap_max_changes,
        flap_window: float = DEFAULTS.flap_window,
        repeat_intervals: Mapping[str, float] | None = None,
        dispatcher: AlertDispatcher | None = None,
        alert_state: AlertStateStore | None = None,
    ) -> None:
        # The bounds of the file's ``monitor`` section (monitoring/settings.py), applied here.
        checked_settings(
            max_history=max_history, failure_threshold=failure_threshold,
            success_threshold=success_threshold, repeat_interval=repeat_interval,
            error_rate_window=error_rate_window, default_timeout=default_timeout,
            system_metrics_interval=system_metrics_interval, flap_max_changes=flap_max_changes,
            flap_window=flap_window, repeat_intervals=dict(repeat_intervals or {}),
        )  # fmt: skip
        self._owns_checker = health_checker is None
        self.health_checker: HealthChecker = health_checker or DefaultHealthChecker()
        self.resource_monitor: ResourceMonitor = resource_monitor or DefaultResourceMonitor()
        self.store: HistoryStore = store if store is not None else MemoryStore(max_history)
        # The service passes one with a durable outbox; the library default keeps it in memory.
        dispatcher = dispatcher if dispatcher is not None else AlertDispatcher()
        rule_repeat = dict(repeat_intervals or {})
        self.default_settings = LifecycleSettings(
            failure_threshold, success_threshold, repeat_interval, rule_repeat
        )
        self.default_timeout = default_timeout
        self.alert_state = alert_state
        self._lock = threading.RLock()
        self._deployments: dict[str, MonitoredDeployment] = {}
        # The two rooms behind this facade: alerts (lifecycle, suppression, delivery) and
        # checks (starting, sampling, batching, recording), sharing its lock and table.
        self._alerts = AlertPath(
            self._lock, self.store, dispatcher, alert_state, self.default_settings
        )
        self._checks = CheckPath(
            self._lock,
            self._deployments,
            self.health_checker,
            self.resource_monitor,
            self.store,
            self._alerts,
            error_rate_window=error_rate_window,
            default_timeout=default_timeout,
            system_metrics_interval=system_metrics_interval,
            # A deployment that keeps changing state alerts once as flapping, not each time.
            flaps=FlapDetector(flap_max_changes, flap_window)
            if flap_max_changes is not None
            else None,
        )
        self._engine = self._checks.engine
        self._engine.guard.on_change = self._overload_changed

    # ------------------------------------------------------------ configuration
    @property
    def alert_thresholds(self) -> dict[str, float]:
        return self._checks.thresholds

    @alert_thresholds.setter
    def alert_thresholds(self, value: Mapping[str, Any]) -> None:
        self._checks.thresholds = ThresholdDict(value)

    @property
    def dispatcher(self) -> AlertDispatcher:
        """Where alerts go; may be replaced before monitoring starts."""
        return self._alerts.dispatcher

    @dispatcher.setter
    def dispatcher(self, value: AlertDispatcher) -> None:
        self._alerts.dispatcher = value

    @property
    def error_rate_window(self) -> float:
        """Seconds of checks the error rate is taken over."""
        return self._checks.error_rate_window

    @property
    def system_metrics_interval(self) -> float:
        """Seconds between two samples of the host's resources."""
        return self._checks.system_metrics_interval

    def add_deployment_monitoring(
        self,
        deployment_id: str,
        health_check_url: str,
        process_name: str | None = None,
        check_interval: float = 30,
        *,
        timeout: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        failure_threshold: int | None = None,
        success_threshold: int | None = None,
        repeat_interval: float | None = None,
        metadata: DeploymentMetadata | None = None,
        group: str | None = None,
        public: bool = False,
        **check: Unpack[CheckFields],
    ) -> None:
        """Monitor a deployment (replacing any earlier settings for the same id).

        Its first check runs at once when monitoring is active, then every
        ``check_interval`` seconds. ``check``: what the check sends and what healthy means
        (``method``, ``headers``, ``body``, ``conditions``, ``degraded_when``, ``tls``,
        ``type``, ``service``, ``preset``, ``model``: :class:`~.spec.DeploymentSpec`).
        ``group`` is the status page's heading for it; ``public`` shows it on the public
        status view and its badges without a token.
        """
        spec = DeploymentSpec.checked(
            **check,
            deployment_id=deployment_id,
            health_check_url=health_check_url,
            process_name=process_name or None,
            check_interval=check_interval,
            timeout=timeout,
            thresholds=thresholds,
            failure_threshold=failure_threshold,
            success_threshold=success_threshold,
            repeat_interval=repeat_interval,
            group=group,
            public=public,
        )
        plan, health_check_url = self._checks.plan_of(spec)
        check_interval = spec.check_interval
        timeout = self.default_timeout if spec.timeout is None else spec.timeout
        d = self.default_settings
        settings = LifecycleSettings(
            spec.failure_threshold or d.failure_threshold,
            spec.success_threshold or d.success_threshold,
            spec.repeat_interval or d.repeat_interval,
            d.rule_repeat_intervals,
        )
        if settings == d:
            settings = d  # one object for every deployment on the defaults
        meta = metadata or DeploymentMetadata(
            deployment_id=deployment_id,
            state="monitored",
            health_check_url=redact_url(health_check_url),
        )
        limits = spec.thresholds.as_dict() if spec.thresholds is not None else {}
        with self._lock:
            old = self._deployments.get(deployment_id)
            if old is not None and old.same_check(health_check_url, process_name or None, plan):
                # Same check, new settings (a reload, the API): alerts and counters carry on.
                reschedule = old.interval != float(check_interval)
                old.update(float(check_interval), float(timeout), limits, settings, meta)
                old.group, old.public = spec.group, spec.public
                if reschedule:
                    self._engine.schedule(deployment_id, float(check_interval))
                return
        if old is not None:
            self.remove_deployment_monitoring(deployment_id)  # another check: a new start
        entry = MonitoredDeployment(
            deployment_id,
            health_check_url,
            process_name or None,
            float(check_interval),
            float(timeout),
            limits,
            settings,
            meta,
            plan,
            group=spec.group,
            public=spec.public,
        )
        self._checks.prepare(entry)
        restored = self._alerts.restore(entry)
        with self._lock:
            self._deployments[deployment_id] = entry
        self._engine.schedule(deployment_id, float(check_interval))
        self._alerts.announce_restored(entry, restored)

    def resolve_unmonitored(self) -> int:
        """Resolve alerts of an earlier run whose deployment is no longer monitored (to the
        handlers that got them); returns how many. The service calls it once its
        deployments are added."""
        return self._alerts.resolve_unmonitored()

    def remove_deployment_monitoring(self, deployment_id: str) -> bool:
        """Stop monitoring; its firing alerts are resolved. False if it was not monitored."""
        with self._lock:
            entry = self._deployments.pop(deployment_id, None)
        self._engine.unschedule(deployment_id)
        if entry is None:
            return False
        self._alerts.resolve_all(entry, "no longer monitored")
        self._checks.forget(entry)
        return True

    def add_alert_handler(self, handler: AlertHandler) -> None:
        """Deliver alerts to ``handler`` (in its own thread: it never delays checks)."""
        if not isinstance(handler, AlertHandler):
            raise ConfigError(
                "handler", "must be an AlertHandler (subclass it and implement send_alert)"
            )
        self.dispatcher.add_handler(handler)

    def remove_alert_handler(self, handler: AlertHandler) -> None:
        self.dispatcher.remove_handler(handler)

    def add_suppressor(self, fn: Suppressor) -> None:
        """``fn(deployment_id, alert_type, now)`` returns a reason to keep an alert quiet, or None.

        Suppressed alerts are still recorded, with the reason (silences, maintenance windows).
        """
        self._alerts.add_suppressor(fn)

    def add_result_listener(self, fn: ResultListener) -> None:
        """Call ``fn(deployment_id, result)`` after every check, on the engine's loop; keep it fast."""
        with self._lock:
            self._checks.listeners.append(fn)

    # ------------------------------------------------------------ lifecycle
    @property
    def monitoring_active(self) -> bool:
        return self._engine.running

    @property
    def monitored_deployments(self) -> dict[str, dict[str, Any]]:
        """Snapshot: deployment id -> its monitoring configuration."""
        with self._lock:
            return {k: e.config() for k, e in self._deployments.items()}

    def start_monitoring(self) -> None:
        """Start checking in a background thread; returns at once. Calling it twice is harmless.

        Collects garbage once first (when not yet running), so the objects the deployments
        were added with are counted long-lived. Why: the collector's full collection runs
        when the objects it promoted outnumber a quarter of those it holds; a steady check
        loop promotes next to nothing, so that threshold, counting the adds, would otherwise
        be crossed during the first checks and stall them (~90 ms at 10,000 deployments,
        ~1 s at 100,000). Settings of the collector are left as they are.
        """
        if self._engine.loop is None:
            gc.collect()
        self._engine.start_in_thread()

    def stop_monitoring(self) -> None:
        """Stop within about a second, even while checks hang; no thread or task is left."""
        if self._engine.loop is None:
            return
        self._engine.stop(self._checks.loop_cleanup)
        self.store.flush()

    async def start_monitoring_async(self) -> None:
        """Start checking on the running loop (for asyncio programs); collects garbage once
        first, as :meth:`start_monitoring` does."""
        if self._engine.loop is None:
            gc.collect()
        await self._engine.start_on_current_loop()

    async def stop_monitoring_async(self) -> None:
        await self._engine.stop_async(self._checks.loop_cleanup)
        await asyncio.to_thread(self.store.flush)

    def close(self) -> None:
        """Stop monitoring and release the checker, handlers, store and alert state."""
        self.stop_monitoring()
        self.dispatcher.close()
        self._checks.blocking.close()
        if self._owns_checker:
            self.health_checker.close()
        self.store.close()
        if self.alert_state is not None:
            self.alert_state.close()

    def __enter__(self) -> DeploymentHealthMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ alerts of the monitor
    def overload_reason(self) -> str | None:
        """Why the monitor itself is overloaded now (its checks late, its loop stalling),
        or None. ``/healthz`` answers 503 with it; the ``monitor_overloaded`` alert fires."""
        return self._engine.guard.reason

    def _overload_changed(self, overloaded: bool, reason: str) -> None:
        """The guard's callback, on the engine's loop: fire or resolve ``monitor_overloaded``."""
        guard = self._engine.guard
        message = reason if overloaded else f"resolved: {reason}"
        value = guard.lag * 1000.0 if overloaded else None
        try:
            self._alerts.self_alert(OVERLOADED, message, firing=overloaded, value=value,
                                    threshold=guard.enter * 1000.0)  # fmt: skip
        except Exception:
            logger.exception("monitor_overloaded alert failed")

    def self_alert(
        self, alert_type: str, message: str, *, firing: bool, value: float | None = None
    ) -> bool:
        """Fire (``firing=True``) or resolve an alert about the monitor itself, under
        :data:`MONITOR_ID`, with every alert's lifecycle (recorded, resolved to the handlers
        that got the firing). The service's store watch raises ``monitor_store_failing``
        so. Returns whether anything changed."""
        return self._alerts.self_alert(alert_type, message, firing=firing, value=value)

    def notify(
        self,
        alert_type: str,
        metadata: DeploymentMetadata,
        severity: str,
        message: str,
        started_at: float | None = None,
    ) -> list[str]:
        """Send a one-shot event (a rollout's) to every alert handler whose ``match``
        accepts it, through the same door as the monitor's alerts (same facts, same routing,
        each handler in its own worker);
        not recorded as an alert and never suppressed. Returns the handler keys."""
        return self._alerts.announce(alert_type, metadata, severity, message, started_at)

    def host_metrics(self) -> ResourceMetrics | None:
        """The machine's latest CPU, memory, disk and network use (None before the first
        check). Sampled at most every ``system_metrics_interval`` seconds while monitoring;
        never attributed to a deployment."""
        return self._checks.system

    # ------------------------------------------------------------ reading
    def get_deployment_status(self, deployment_id: str) -> dict[str, Any]:
        """Current health of one deployment (see docs for the keys). KeyError if not monitored."""
        with self._lock:
            entry = self._deployments.get(deployment_id)
            if entry is None:
                raise KeyError(
                    f"deployment_id {deployment_id!r} is not monitored; "
                    "add it with add_deployment_monitoring()"
                )
            return entry.status(self._engine.running)

    def get_all_deployment_statuses(self) -> dict[str, dict[str, Any]]:
        """Every deployment's status; each one consistent, read a few hundred at a time so
        that a reader of 10,000 never holds the checks' lock for long (~130 ms at once)."""
        with self._lock:
            items = list(self._deployments.items())
        running = self._engine.running
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(items), _STATUS_CHUNK):
            with self._lock:
                for k, e in items[i : i + _STATUS_CHUNK]:
                    if self._deployments.get(k) is e:
                        out[k] = e.status(running)
        return out

    def get_health_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HealthCheckResult]:
        return self.store.health_history(deployment_id, since, until, limit)

    def get_resource_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[ResourceMetrics]:
        return self.store.resource_history(deployment_id, since, until, limit)

    def get_active_alerts(self, deployment_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            entries = [
                e
                for k, e in self._deployments.items()
                if deployment_id is None or k == deployment_id
            ]
            return [alert_dict(a) for e in entries for a in e.active_alerts()]

    def get_alert_history(
        self,
        deployment_id: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]:
        return self.store.alert_history(deployment_id, since, limit)

    def engine_stats(self) -> dict[str, Any]:
        return {**self._engine.stats(), **self._checks.blocking.stats()}

    def wait_for_checks(self, deployment_id: str, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until ``count`` more checks of ``deployment_id`` have been recorded."""
        deadline = time.monotonic() + timeout
        checked = self._checks.checked
        with checked:
            entry = self._deployments.get(deployment_id)
            if entry is None:
                raise KeyError(f"deployment_id {deployment_id!r} is not monitored")
            target = entry.total + count
            while entry.total < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._deployments.get(deployment_id) is not entry:
                    return False
                checked.wait(left)
            return True

    def export_monitoring_data(self, path: str | Path, since: float | None = None) -> Path:
        """Write health, resource and alert history plus configuration as JSON, atomically."""
        with self._lock:
            configs = {k: e.config() for k, e in self._deployments.items()}
            statuses = {k: e.status(self._engine.running) for k, e in self._deployments.items()}
            thresholds = dict(self._checks.thresholds)
        return _export.write_export(
            Path(path), self.store, configs, statuses, thresholds, self.default_settings, since
        )
