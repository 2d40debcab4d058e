"""The monitor: deployments checked on their intervals, resources sampled, alerts raised.

Public through :mod:`crackseg.utils.deployment.health_monitoring`, which holds the usage example.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crackseg.utils.deployment.delivery.base import AlertDispatcher, AlertHandler
from crackseg.utils.deployment.errors import ConfigError, ProcessNotFoundError, require_positive
from crackseg.utils.deployment.history import export as _export
from crackseg.utils.deployment.history.alert_state import AlertRecord, AlertStateStore
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.models import (
    AlertEvent,
    DeploymentMetadata,
    HealthCheckResult,
    ResourceMetrics,
)
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker, failure
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from crackseg.utils.deployment.monitoring.engine import PHASE_GRID, Engine
from crackseg.utils.deployment.monitoring.flapping import FlapDetector
from crackseg.utils.deployment.monitoring.isolation import (
    GRACE_SECONDS,
    BlockingRunner,
    Busy,
    blocking_checker,
    blocking_resource_monitor,
    run_check,
)
from crackseg.utils.deployment.monitoring.resources.base import ResourceMonitor
from crackseg.utils.deployment.monitoring.resources.psutil_monitor import DefaultResourceMonitor
from crackseg.utils.deployment.monitoring.rules import (
    DEFAULT_THRESHOLDS,
    RULES,
    LifecycleSettings,
    Observation,
)
from crackseg.utils.deployment.monitoring.spec import (
    DeploymentSpec,
    first_problem,
    require_interval,
    require_timeout,
)
from crackseg.utils.deployment.monitoring.tracked import (
    MonitoredDeployment,
    ThresholdDict,
    alert_dict,
)
from crackseg.utils.deployment.redact import redact_url

__all__ = ["MONITOR_ID", "OVERLOADED", "DeploymentHealthMonitor", "ResultListener", "Suppressor"]

#: The deployment id of the monitor's own alerts, and the alert type of its overload.
MONITOR_ID = "crackseg-monitor"
OVERLOADED = "monitor_overloaded"

logger = logging.getLogger("crackseg.utils.deployment.health_monitoring")

# Statuses read per lock hold: ~3 ms at a time for 256, the checks' lock free in between.
_STATUS_CHUNK = 256

Suppressor = Callable[[str, str, float], str | None]
ResultListener = Callable[[str, HealthCheckResult], None]


def _checked_spec(**args: Any) -> DeploymentSpec:
    """The arguments as a :class:`DeploymentSpec`, or ConfigError naming the first bad one."""
    if isinstance(args["thresholds"], Mapping):
        args["thresholds"] = dict(args["thresholds"])
    try:
        return DeploymentSpec.model_validate(args)
    except ValidationError as exc:
        raise ConfigError(*first_problem(exc)) from None


@dataclass(slots=True)
class _Done:
    """A check that ended, waiting to be recorded with the others of its loop iteration."""

    entry: MonitoredDeployment
    result: HealthCheckResult
    metrics: ResourceMetrics | None
    running: bool | None
    at: float  # monotonic: when it ended, the time its rules judge it at


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
        max_history: int = 1000,
        failure_threshold: int = 3,
        success_threshold: int = 2,
        repeat_interval: float = 3600.0,
        error_rate_window: float = 300.0,
        default_timeout: float = 10.0,
        system_metrics_interval: float = 5.0,
        flap_max_changes: int | None = 6,
        flap_window: float = 600.0,
        repeat_intervals: Mapping[str, float] | None = None,
        dispatcher: AlertDispatcher | None = None,
        alert_state: AlertStateStore | None = None,
    ) -> None:
        require_positive("max_history", max_history)
        require_positive("failure_threshold", failure_threshold)
        require_positive("success_threshold", success_threshold)
        require_interval("repeat_interval", repeat_interval)
        require_interval("error_rate_window", error_rate_window)
        require_interval("system_metrics_interval", system_metrics_interval)
        require_interval("flap_window", flap_window)
        require_timeout("default_timeout", default_timeout)
        self._owns_checker = health_checker is None
        self.health_checker: HealthChecker = health_checker or DefaultHealthChecker()
        self.resource_monitor: ResourceMonitor = resource_monitor or DefaultResourceMonitor()
        self.store: HistoryStore = store if store is not None else MemoryStore(max_history)
        # The service passes one with a durable outbox; the library default keeps it in memory.
        self.dispatcher = dispatcher if dispatcher is not None else AlertDispatcher()
        rule_repeat = dict(repeat_intervals or {})
        for rule, seconds in rule_repeat.items():
            if rule not in RULES:
                raise ConfigError(
                    f"repeat_intervals[{rule!r}]",
                    f"unknown alert type; use one of {', '.join(sorted(RULES))}",
                )
            require_interval(f"repeat_intervals[{rule!r}]", seconds)
        self.default_settings = LifecycleSettings(
            failure_threshold, success_threshold, repeat_interval, rule_repeat
        )
        self.error_rate_window = error_rate_window
        self.default_timeout = default_timeout
        self.system_metrics_interval = system_metrics_interval
        self._alert_thresholds = ThresholdDict(DEFAULT_THRESHOLDS)
        self._lock = threading.RLock()
        self._checked = threading.Condition(self._lock)
        self._deployments: dict[str, MonitoredDeployment] = {}
        self._suppressors: list[Suppressor] = []
        self._listeners: list[ResultListener] = []
        self._system: ResourceMetrics | None = None
        self._system_at = -1e18
        self._inline_resources = not blocking_resource_monitor(self.resource_monitor)
        # Blocking custom code runs one call per deployment at a time, so a hanging one
        # stalls only its own deployment (monitoring/isolation.py).
        self._blocking = BlockingRunner()
        self._blocking_checker = blocking_checker(self.health_checker)
        # The default checker bounds each check by its own deadline: no second timer.
        self._self_bounded = (
            type(self.health_checker).check_health_async is DefaultHealthChecker.check_health_async
        )
        # The default checker's checks gain from starting together (their cost is the loop's
        # wake-ups). Custom checkers keep their phases as added: a blocking one takes a
        # thread however it starts, and spread out they need fewer.
        self._engine = Engine(self._start_checks, grid=PHASE_GRID if self._self_bounded else 0.0)
        self._pending: list[_Done] = []
        self._flush_handle: asyncio.Handle | None = None
        # The monitor's own overload alert goes through the same lifecycle as a deployment's.
        self._self_entry = MonitoredDeployment(
            MONITOR_ID, "http://monitor.invalid/", None, 1.0, 1.0, {}, self.default_settings,
            DeploymentMetadata(deployment_id=MONITOR_ID, state="monitored"),
        )  # fmt: skip
        self._engine.guard.on_change = self._overload_changed
        # A deployment that keeps changing state alerts once as flapping, not on every change.
        self._flaps = (
            FlapDetector(flap_max_changes, flap_window) if flap_max_changes is not None else None
        )
        # Firing alerts of an earlier run, taken back when their deployment is added.
        self.alert_state = alert_state
        self._restored: dict[str, list[AlertRecord]] = {}
        for rec in alert_state.load() if alert_state is not None else ():
            self._restored.setdefault(rec.firing.deployment_id, []).append(rec)

    # ------------------------------------------------------------ configuration
    @property
    def alert_thresholds(self) -> dict[str, float]:
        return self._alert_thresholds

    @alert_thresholds.setter
    def alert_thresholds(self, value: Mapping[str, Any]) -> None:
        self._alert_thresholds = ThresholdDict(value)

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
    ) -> None:
        """Monitor a deployment (replacing any earlier settings for the same id).

        Its first check runs at once when monitoring is active, then every
        ``check_interval`` seconds. ``group`` is the status page's heading for it;
        ``public`` shows it on the public status view and its badges without a token.
        """
        spec = _checked_spec(
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
            if old is not None and old.same_check(health_check_url, process_name or None):
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
            group=spec.group,
            public=spec.public,
        )
        reserve = getattr(self.store, "reserve", None)  # optional (MemoryStore has it)
        if reserve is not None:
            reserve(deployment_id)  # its history made now, not on the loop: see start_monitoring
        if self._self_bounded:
            # Made with the deployment, not on the loop by its first check: see start_monitoring.
            entry.probe = self.health_checker.probe(  # type: ignore[attr-defined]
                functools.partial(self._answered, entry), health_check_url
            )
        restored = self._restore(entry)
        with self._lock:
            self._deployments[deployment_id] = entry
        self._engine.schedule(deployment_id, float(check_interval))
        for rec in restored:
            if rec.notified:
                f = rec.firing
                self.dispatcher.restore(
                    rec.notified, f.alert_type, entry.metadata, **self._facts(f)
                )

    def _restore(self, entry: MonitoredDeployment) -> list[AlertRecord]:
        with self._lock:
            records = self._restored.pop(entry.deployment_id, [])
        now_mono, now = time.monotonic(), time.time()
        for rec in records:
            # Its next repeat is due where it would have been without the restart.
            entry.tracker.restore(rec.firing, now_mono - max(0.0, now - rec.firing.timestamp))
            if rec.notified:
                entry.notified[rec.firing.alert_type] = set(rec.notified)
        return records

    def resolve_unmonitored(self) -> int:
        """Resolve alerts of an earlier run whose deployment is no longer monitored (to the
        handlers that got them); returns how many. The service calls it once its
        deployments are added."""
        with self._lock:
            orphans = [r for recs in self._restored.values() for r in recs]
            self._restored.clear()
        now = time.time()
        for rec in orphans:
            f = rec.firing
            entry = MonitoredDeployment(f.deployment_id, "http://unmonitored", None, 1.0, 1.0,
                                        {}, self.default_settings,
                                        DeploymentMetadata(deployment_id=f.deployment_id))  # fmt: skip
            entry.tracker.restore(f, 0.0)
            entry.notified[f.alert_type] = set(rec.notified)
            for ev in entry.resolve_all(now, "no longer monitored"):
                self._emit(entry, ev)
        return len(orphans)

    def remove_deployment_monitoring(self, deployment_id: str) -> bool:
        """Stop monitoring; its firing alerts are resolved. False if it was not monitored."""
        with self._lock:
            entry = self._deployments.pop(deployment_id, None)
        self._engine.unschedule(deployment_id)
        if entry is None:
            return False
        with self._lock:
            events = entry.resolve_all(time.time(), "no longer monitored")
        for ev in events:
            self._emit(entry, ev)
        if self._flaps is not None:
            self._flaps.forget(deployment_id)
        self.store.forget(deployment_id)
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
        with self._lock:
            self._suppressors.append(fn)

    def add_result_listener(self, fn: ResultListener) -> None:
        """Call ``fn(deployment_id, result)`` after every check, on the engine's loop; keep it fast."""
        with self._lock:
            self._listeners.append(fn)

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
        self._engine.stop(self._loop_cleanup)
        self.store.flush()

    async def start_monitoring_async(self) -> None:
        """Start checking on the running loop (for asyncio programs); collects garbage once
        first, as :meth:`start_monitoring` does."""
        if self._engine.loop is None:
            gc.collect()
        await self._engine.start_on_current_loop()

    async def stop_monitoring_async(self) -> None:
        await self._engine.stop_async(self._loop_cleanup)
        await asyncio.to_thread(self.store.flush)

    def close(self) -> None:
        """Stop monitoring and release the checker, handlers, store and alert state."""
        self.stop_monitoring()
        self.dispatcher.close()
        self._blocking.close()
        if self._owns_checker:
            self.health_checker.close()
        self.store.close()
        if self.alert_state is not None:
            self.alert_state.close()

    def __enter__(self) -> DeploymentHealthMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _loop_cleanup(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()  # results that arrived before the stop are recorded
        release = getattr(self.health_checker, "release_loop", None)
        if release is not None:
            await release()

    # ------------------------------------------------------------ the check path
    def _start_checks(self, keys: list[str]) -> None:
        """The engine's batch of due deployments (on its loop): each check started without
        a task where the checker can (an idle connection at hand), else as a task."""
        stalled = self._engine.guard.stall_seconds
        with self._lock:
            entries = [self._deployments.get(k) for k in keys]
        gone: list[str] = []
        checker = self.health_checker if self._self_bounded else None
        started = time.monotonic()
        for key, entry in zip(keys, entries, strict=True):
            if entry is None:
                gone.append(key)
                continue
            if checker is not None:
                # Its probe was made when it was added (add_deployment_monitoring).
                entry.check_started, entry.check_stalled = started, stalled
                if checker.start_check(entry.probe, entry.url, entry.timeout):  # type: ignore[attr-defined]
                    continue
            self._engine.spawn(self._run_check(entry, stalled))
        if gone:
            self._engine.finish(gone, recorded=False)

    def _answered(self, entry: MonitoredDeployment, result: HealthCheckResult) -> None:
        """A check started without a task ended (on the loop)."""
        if not self._engine.running or self._monitor_failure(
            result, entry.check_started, entry.check_stalled
        ):
            self._engine.finish([entry.deployment_id], recorded=False)
        elif self._samples_due(entry):
            self._engine.spawn(self._then_sample(entry, result))
        else:
            self._queue(_Done(entry, result, None, None, time.monotonic()))

    def _samples_due(self, entry: MonitoredDeployment) -> bool:
        """Whether this check has resources to sample: its process, or the host's turn."""
        return bool(entry.process_name) or (
            time.monotonic() - self._system_at >= self.system_metrics_interval
        )

    async def _then_sample(self, entry: MonitoredDeployment, result: HealthCheckResult) -> None:
        queued = False
        try:
            metrics, running = await self._sample_resources(entry)
            self._queue(_Done(entry, result, metrics, running, time.monotonic()))
            queued = True
        finally:
            if not queued:
                self._engine.finish([entry.deployment_id], recorded=False)

    async def _run_check(self, entry: MonitoredDeployment, stalled: float) -> None:
        queued = False
        try:
            started = time.monotonic()
            result = await self._check(entry, started)
            if self._monitor_failure(result, started, stalled):
                return
            if self._samples_due(entry):
                metrics, running = await self._sample_resources(entry)
            else:
                metrics, running = None, None  # nothing to sample: no await, no coroutine
            self._queue(_Done(entry, result, metrics, running, time.monotonic()))
            queued = True
        except Exception:
            logger.exception("check of %s failed inside the monitor", entry.deployment_id)
        finally:
            if not queued:
                self._engine.finish([entry.deployment_id], recorded=False)

    async def _check(self, entry: MonitoredDeployment, started: float) -> HealthCheckResult:
        if self._blocking_checker:
            result = await run_check(
                self._blocking, entry.deployment_id, self.health_checker, entry.url, entry.timeout
            )
            if result.details.get("busy"):
                entry.busy_checks += 1
            return result
        if self._self_bounded:
            return await self.health_checker.check_health_async(entry.url, entry.timeout)
        bound = entry.timeout + 2.0
        try:
            # A custom async checker may not bound its own time: this bound catches that.
            async with asyncio.timeout(bound):
                return await self.health_checker.check_health_async(entry.url, entry.timeout)
        except TimeoutError:
            return failure(
                f"timeout: no result within {bound:g}s (timeout {entry.timeout:g}s)",
                (time.monotonic() - started) * 1000.0,
            )
        except Exception as exc:
            return failure(
                f"checker error: {type(exc).__name__}", (time.monotonic() - started) * 1000.0
            )

    def _queue(self, done: _Done) -> None:
        """Results ended in one loop iteration are recorded together, in one batch."""
        self._pending.append(done)
        if self._flush_handle is None:
            loop = self._engine.loop
            if loop is None:
                self._flush()
            else:
                self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        recorded = self._record_batch(batch)
        ids = [d.entry.deployment_id for d in batch]
        if all(recorded):
            self._engine.finish(ids, recorded=True)
        else:
            self._engine.finish([i for i, r in zip(ids, recorded, strict=True) if r], recorded=True)
            self._engine.finish(
                [i for i, r in zip(ids, recorded, strict=True) if not r], recorded=False
            )

    def _monitor_failure(self, result: HealthCheckResult, started: float, stalled: float) -> bool:
        """A failure without an answer while the monitor's own loop stalled is the
        monitor's, not the target's: it is not recorded (overload.py)."""
        if result.success or (result.details and "http_status" in result.details):
            return False
        guard = self._engine.guard
        if result.details.get("checker_saturated"):
            guard.saturated(result.error_message or "every connection busy")
            return True
        return guard.monitor_failure(stalled, time.monotonic() - started)

    def overload_reason(self) -> str | None:
        """Why the monitor itself is overloaded now (its checks late, its loop stalling),
        or None. ``/healthz`` answers 503 with it; the ``monitor_overloaded`` alert fires."""
        return self._engine.guard.reason

    def _overload_changed(self, overloaded: bool, reason: str) -> None:
        """The guard's callback, on the engine's loop: fire or resolve ``monitor_overloaded``."""
        entry, now = self._self_entry, time.time()
        if overloaded:
            ev = AlertEvent(MONITOR_ID, OVERLOADED, "critical", "firing", reason,
                            self._engine.guard.lag * 1000.0, self._engine.guard.enter * 1000.0,
                            started_at=now, timestamp=now)  # fmt: skip
            with self._lock:
                entry.tracker.open(ev)
        else:
            with self._lock:
                firing = entry.tracker.close(OVERLOADED)
            if firing is None:
                return
            ev = AlertEvent(MONITOR_ID, OVERLOADED, "critical", "resolved",
                            f"resolved: {reason}", None, firing.threshold,
                            started_at=firing.started_at, timestamp=now, resolved_at=now)  # fmt: skip
        try:
            self._emit(entry, ev)
        except Exception:
            logger.exception("monitor_overloaded alert failed")

    def self_alert(
        self, alert_type: str, message: str, *, firing: bool, value: float | None = None
    ) -> bool:
        """Fire (``firing=True``) or resolve an alert about the monitor itself, under
        :data:`MONITOR_ID`, with every alert's lifecycle (recorded, resolved to the handlers
        that got the firing). The service's store watch raises ``monitor_store_failing``
        so. Returns whether anything changed."""
        entry, now = self._self_entry, time.time()
        with self._lock:
            current = entry.tracker.firing(alert_type)
            if firing == (current is not None):
                return False
            if firing:
                ev = AlertEvent(MONITOR_ID, alert_type, "critical", "firing", message, value,
                                None, started_at=now, timestamp=now)  # fmt: skip
                entry.tracker.open(ev)
            else:
                entry.tracker.close(alert_type)
                assert current is not None
                ev = AlertEvent(MONITOR_ID, alert_type, "critical", "resolved", message, value,
                                None, started_at=current.started_at, timestamp=now,
                                resolved_at=now)  # fmt: skip
        self._emit(entry, ev)
        return True

    async def _sample_resources(
        self, entry: MonitoredDeployment
    ) -> tuple[ResourceMetrics | None, bool | None]:
        # The machine is not a deployment: one without a process has no resource metrics of
        # its own; the host's are sampled beside (host_metrics()), at most every
        # system_metrics_interval.
        await self._sample_host()
        if not entry.process_name:
            return None, None
        try:
            try:
                if self._inline_resources:  # ~60 µs with cached PIDs: not worth a thread
                    m = self.resource_monitor.get_process_metrics(entry.process_name)
                else:
                    m = await self._blocking.call(
                        f"{entry.deployment_id}\0resources",
                        entry.timeout + GRACE_SECONDS,
                        self.resource_monitor.get_process_metrics,
                        entry.process_name,
                    )
                return m, True
            except ProcessNotFoundError:
                return None, False
        except Busy:
            return None, None  # its hang was logged once, when it went overdue
        except Exception as exc:
            logger.warning("resource sample for %s failed: %s", entry.deployment_id, exc)
            return None, None

    async def _sample_host(self) -> None:
        now = time.monotonic()
        if now - self._system_at < self.system_metrics_interval:
            return
        self._system_at = now
        try:
            # The first sample may wait out its resource monitor's first window: not inline.
            if self._inline_resources and self._system is not None:
                self._system = self.resource_monitor.get_system_metrics()
            else:
                self._system = await self._blocking.call(
                    "\0system", self.default_timeout, self.resource_monitor.get_system_metrics
                )
        except Busy:
            pass  # its hang was logged once, when it went overdue
        except Exception as exc:
            logger.warning("host resource sample failed: %s", exc)

    def host_metrics(self) -> ResourceMetrics | None:
        """The machine's latest CPU, memory, disk and network use (None before the first
        check). Sampled at most every ``system_metrics_interval`` seconds while monitoring;
        never attributed to a deployment."""
        return self._system

    def _record_batch(self, batch: list[_Done]) -> list[bool]:
        """Record results, judge rules and notify: one lock for the whole batch.

        Each result is judged at the moment it arrived (``_Done.at``), so a batch gives the
        same counters, alerts and statuses as the same results recorded one at a time
        (tests/test_monitor_batching.py). Returns, per result, whether it was recorded (not
        if its deployment was removed or replaced while it ran).
        """
        recorded: list[bool] = []
        work: list[tuple[MonitoredDeployment, _Done, list[AlertEvent], list[AlertEvent]]] = []
        window, flaps, deployments = self.error_rate_window, self._flaps, self._deployments
        with self._lock:
            shared = self._alert_thresholds
            for d in batch:
                entry, result = d.entry, d.result
                if deployments.get(entry.deployment_id) is not entry:
                    recorded.append(False)  # removed or replaced while the check ran
                    continue
                recorded.append(True)
                error_rate = entry.count(result, d.at, window)
                if d.metrics is not None:
                    entry.last_metrics = d.metrics
                entry.process_running = d.running
                obs = Observation(result, d.metrics, entry.process_name, d.running,
                                  entry.consecutive_failures, error_rate)  # fmt: skip
                events = entry.tracker.evaluate(
                    obs, entry.limits(shared), entry.settings, d.at, result.timestamp
                )
                if flaps is not None:
                    events = entry.judge_flapping(flaps, result.status, d.at, result.timestamp,
                                                  events)  # fmt: skip
                # Firing alerts nobody was told of (suppressed until now): try again each
                # check, so the end of a silence, a maintenance window or flapping sends them.
                held: list[AlertEvent] = []
                if entry.tracker.tracking and len(entry.notified) < entry.tracker.firing_count():
                    moved = {ev.alert_type for ev in events}
                    held = [
                        a
                        for a in entry.tracker.active()
                        if not entry.notified.get(a.alert_type) and a.alert_type not in moved
                    ]
                if events or held or d.metrics is not None or self._listeners:
                    work.append((entry, d, events, held))
            listeners = list(self._listeners) if self._listeners else ()
            self._checked.notify_all()
        store = self.store
        if len(work) < len(batch):  # the common case: nothing but the result to store
            touched = {id(w[1]) for w in work}
            for d, ok in zip(batch, recorded, strict=True):
                if ok and id(d) not in touched:
                    store.add_health(d.entry.deployment_id, d.result)
        for entry, d, events, held in work:
            store.add_health(entry.deployment_id, d.result)
            if d.metrics is not None:
                store.add_resource(entry.deployment_id, d.metrics)
            for ev in events:
                self._emit(entry, ev)
            for firing in held:
                self._emit_held(entry, firing, d.result.timestamp)
            for fn in listeners:
                try:
                    fn(entry.deployment_id, d.result)
                except Exception:
                    logger.exception("result listener failed")
        return recorded

    def _suppression(self, entry: MonitoredDeployment, ev: AlertEvent) -> str | None:
        if ev.alert_type == "health_check_failed" and entry.flapping is not None:
            return "flapping"
        with self._lock:
            suppressors = list(self._suppressors)
        for fn in suppressors:
            try:
                reason = fn(ev.deployment_id, ev.alert_type, ev.timestamp)
            except Exception:
                logger.exception("alert suppressor failed; not suppressing")
                reason = None
            if reason:
                return reason
        return None

    @staticmethod
    def _facts(ev: AlertEvent) -> dict[str, Any]:
        return {
            "severity": ev.severity,
            "message": ev.message,
            "value": ev.value,
            "threshold": ev.threshold,
            "state": ev.state,
            "firing": ev.state == "firing",
            "resolved": ev.state == "resolved",
            "repeat": ev.repeat,
            "started_at": ev.started_at,
            "timestamp": ev.timestamp,
            "deployment_id": ev.deployment_id,
        }

    def _emit(self, entry: MonitoredDeployment, ev: AlertEvent) -> None:
        """Record one transition and notify: a firing to every handler unless suppressed, a
        resolve to exactly the handlers that got the firing (never suppressed).

        With an alert state store the notification leaves only once the state saying so is
        committed (in order, on the store's thread): a kill -9 between the two never pages
        twice after the restart.
        """
        if ev.state == "resolved":
            with self._lock:
                keys = entry.notified.pop(ev.alert_type, set())
            if not keys:
                ev.suppressed_reason = "its firing reached no handler"
            self.store.add_alert(ev)
            send = self._sender(entry, ev, keys) if keys else None
            if self.alert_state is not None:
                self.alert_state.delete(ev.deployment_id, ev.alert_type, after=send)
            elif send is not None:
                send()
            return
        if not ev.suppressed_reason:
            ev.suppressed_reason = self._suppression(entry, ev)
        self.store.add_alert(ev)
        keys = set() if ev.suppressed_reason else set(self.dispatcher.handler_keys())
        with self._lock:
            if entry.tracker.firing(ev.alert_type) is None:
                return  # resolved meanwhile (removed while notifying)
            notified = entry.notified.get(ev.alert_type, set()) | keys
            if notified:
                entry.notified[ev.alert_type] = notified
            record = AlertRecord(ev, tuple(sorted(notified)))
        send = self._sender(entry, ev, keys) if keys else None
        if self.alert_state is not None:
            self.alert_state.save(record, after=send)
        elif send is not None:
            send()

    def _sender(
        self, entry: MonitoredDeployment, ev: AlertEvent, keys: set[str]
    ) -> Callable[[], None]:
        facts, metadata = self._facts(ev), entry.metadata

        def send() -> None:
            self.dispatcher.dispatch(ev.alert_type, metadata, handler_keys=keys, **facts)

        return send

    def _emit_held(self, entry: MonitoredDeployment, firing: AlertEvent, now: float) -> None:
        """Send a firing that was held back, if nothing holds it back any more."""
        probe = AlertEvent(firing.deployment_id, firing.alert_type, firing.severity,
                           firing.state, firing.message, firing.value, firing.threshold,
                           started_at=firing.started_at, timestamp=now)  # fmt: skip
        if not self.dispatcher.handler_keys() or self._suppression(entry, probe) is not None:
            return
        self._emit(entry, probe)

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
        return {**self._engine.stats(), **self._blocking.stats()}

    def wait_for_checks(self, deployment_id: str, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until ``count`` more checks of ``deployment_id`` have been recorded."""
        deadline = time.monotonic() + timeout
        with self._checked:
            entry = self._deployments.get(deployment_id)
            if entry is None:
                raise KeyError(f"deployment_id {deployment_id!r} is not monitored")
            target = entry.total + count
            while entry.total < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._deployments.get(deployment_id) is not entry:
                    return False
                self._checked.wait(left)
            return True

    def export_monitoring_data(self, path: str | Path, since: float | None = None) -> Path:
        """Write health, resource and alert history plus configuration as JSON, atomically."""
        with self._lock:
            configs = {k: e.config() for k, e in self._deployments.items()}
            statuses = {k: e.status(self._engine.running) for k, e in self._deployments.items()}
            thresholds = dict(self._alert_thresholds)
        return _export.write_export(
            Path(path), self.store, configs, statuses, thresholds, self.default_settings, since
        )
