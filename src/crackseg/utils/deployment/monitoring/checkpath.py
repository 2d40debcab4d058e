"""The monitor's check path: from the engine's due deployments to recorded results.

A due deployment's check starts on the checker's task-free path where it can
(:mod:`.checks.fastpath`), else in a task (custom checkers, blocking ones in
:mod:`.isolation`); resources are sampled when due; results that end in one loop
iteration are recorded in one batch, under one hold of the monitor's lock, judged by the
rules, and their transitions handed to the alert path (:mod:`.alerting`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from crackseg.utils.deployment.errors import ConfigError, ProcessNotFoundError
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.models import AlertEvent, HealthCheckResult, ResourceMetrics
from crackseg.utils.deployment.monitoring.alerting import AlertPath
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker, checker_error, failure
from crackseg.utils.deployment.monitoring.checks.fastpath import task_free
from crackseg.utils.deployment.monitoring.checks.grpc import GrpcChecker
from crackseg.utils.deployment.monitoring.checks.plan import CheckPlan, PlanChecker, PlanHttpChecker
from crackseg.utils.deployment.monitoring.checks.tcp import TcpChecker
from crackseg.utils.deployment.monitoring.checks.tls import TlsOptions
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
from crackseg.utils.deployment.monitoring.rules import DEFAULT_THRESHOLDS, Observation
from crackseg.utils.deployment.monitoring.spec import DeploymentSpec
from crackseg.utils.deployment.monitoring.tracked import MonitoredDeployment, ThresholdDict

__all__ = ["CheckPath", "Done", "ResultListener"]

logger = logging.getLogger("crackseg.utils.deployment.health_monitoring")

ResultListener = Callable[[str, HealthCheckResult], None]


@dataclass(slots=True)
class Done:
    """A check that ended, waiting to be recorded with the others of its loop iteration."""

    entry: MonitoredDeployment
    result: HealthCheckResult
    metrics: ResourceMetrics | None
    running: bool | None
    at: float  # monotonic: when it ended, the time its rules judge it at


class CheckPath:
    """Starts, bounds, samples, batches and records the checks of the monitored deployments.

    Shares the monitor's lock and deployment table; runs on the engine's loop, except
    :meth:`record_batch`, which tests also call directly.
    """

    def __init__(
        self,
        lock: threading.RLock,
        deployments: dict[str, MonitoredDeployment],
        checker: HealthChecker,
        resources: ResourceMonitor,
        store: HistoryStore,
        alerts: AlertPath,
        *,
        error_rate_window: float,
        default_timeout: float,
        system_metrics_interval: float,
        flaps: FlapDetector | None,
    ) -> None:
        self._lock = lock
        self.checked = threading.Condition(lock)
        self._deployments = deployments
        self.checker = checker
        self.resources = resources
        self.store = store
        self.alerts = alerts
        self.error_rate_window = error_rate_window
        self.default_timeout = default_timeout
        self.system_metrics_interval = system_metrics_interval
        self.flaps = flaps
        self.thresholds = ThresholdDict(DEFAULT_THRESHOLDS)
        self.listeners: list[ResultListener] = []
        self.system: ResourceMetrics | None = None
        self._system_at = -1e18
        self._inline_resources = not blocking_resource_monitor(resources)
        # Blocking custom code runs one call per deployment at a time, so a hanging one
        # stalls only its own deployment (monitoring/isolation.py).
        self.blocking = BlockingRunner()
        self._blocking_checker = blocking_checker(checker)
        # The default checker bounds each check by its own deadline: no second timer.
        self._fast = task_free(checker)
        # The default checker's checks gain from starting together (their cost is the loop's
        # wake-ups). Custom checkers keep their phases as added: a blocking one takes a
        # thread however it starts, and spread out they need fewer.
        grid = PHASE_GRID if self._fast is not None else 0.0
        self.engine = Engine(self._start_checks, grid=grid)
        self._pending: list[Done] = []
        self._plan_checkers: dict[str, PlanChecker] = {}  # grpc, tcp: made when first needed
        # How many deployments check each (type, url, tls) target of a plan checker: what
        # the checker keeps for a target (a gRPC channel) goes with its last deployment.
        self._targets: dict[tuple[str, str, TlsOptions | None], int] = {}
        self._flush_handle: asyncio.Handle | None = None

    def prepare(self, entry: MonitoredDeployment) -> None:
        """Ready a new deployment's checks and history: made with it, not on the loop by its
        first check (at 100,000 deployments the loop's first round would otherwise build
        them all, and set off a full collection)."""
        reserve = getattr(self.store, "reserve", None)  # optional (MemoryStore has it)
        if reserve is not None:
            reserve(entry.deployment_id)
        plan = entry.plan
        if self._fast is not None and (plan is None or plan.type == "http"):
            done = functools.partial(self._answered, entry)
            entry.probe = self._fast.probe(done, entry.url, plan=plan)
        elif plan is not None and plan.type != "http":
            target = (plan.type, plan.url, plan.tls)
            with self._lock:
                self._targets[target] = self._targets.get(target, 0) + 1

    def plan_of(self, spec: DeploymentSpec) -> tuple[CheckPlan | None, str]:
        """``spec``'s compiled check (None for the checker's plain GET) and the URL checked
        (a preset's expansion). ConfigError when this checker cannot carry it: a check with
        its own request or conditions needs the default checker (a custom one gets a URL)."""
        plan = spec.check
        if plan.default:
            return None, plan.url
        if plan.type == "http" and not isinstance(self.checker, PlanHttpChecker):
            raise ConfigError(
                "conditions", "needs the default health checker (a custom checker gets a URL only)"
            )
        return plan, plan.url

    def forget(self, entry: MonitoredDeployment) -> None:
        """A deployment no longer monitored: its flapping record and history go, and what
        its check type keeps for its target (a gRPC channel) when no other deployment
        checks that target."""
        deployment_id = entry.deployment_id
        if self.flaps is not None:
            self.flaps.forget(deployment_id)
        self.store.forget(deployment_id)
        plan = entry.plan
        if plan is None or plan.type == "http":
            return
        target = (plan.type, plan.url, plan.tls)
        with self._lock:
            users = self._targets.get(target, 0) - 1
            if users > 0:
                self._targets[target] = users
                return
            self._targets.pop(target, None)
            checker = self._plan_checkers.get(plan.type)
        if checker is not None:
            checker.release(plan)

    # ------------------------------------------------------------ starting
    def _start_checks(self, keys: list[str]) -> None:
        """The engine's batch of due deployments (on its loop): each check started without
        a task where the checker can (an idle connection at hand), else as a task."""
        stalled = self.engine.guard.stall_seconds
        with self._lock:
            entries = [self._deployments.get(k) for k in keys]
        gone: list[str] = []
        fast = self._fast
        started = time.monotonic()
        for key, entry in zip(keys, entries, strict=True):
            if entry is None:
                gone.append(key)
                continue
            if fast is not None and entry.probe is not None:
                entry.check_started, entry.check_stalled = started, stalled
                if fast.start_check(entry.probe, entry.url, entry.timeout):
                    continue
            self.engine.spawn(self._run_check(entry, stalled))
        if gone:
            self.engine.finish(gone, recorded=False)

    def _answered(self, entry: MonitoredDeployment, result: HealthCheckResult) -> None:
        """A check started without a task ended (on the loop)."""
        if not self.engine.running or self._monitor_failure(
            result, entry.check_started, entry.check_stalled
        ):
            self.engine.finish([entry.deployment_id], recorded=False)
        elif self._samples_due(entry):
            self.engine.spawn(self._then_sample(entry, result))
        else:
            self._queue(Done(entry, result, None, None, time.monotonic()))

    def _samples_due(self, entry: MonitoredDeployment) -> bool:
        """Whether this check has resources to sample: its process, or the host's turn."""
        return bool(entry.process_name) or (
            time.monotonic() - self._system_at >= self.system_metrics_interval
        )

    async def _then_sample(self, entry: MonitoredDeployment, result: HealthCheckResult) -> None:
        queued = False
        try:
            metrics, running = await self._sample_resources(entry)
            self._queue(Done(entry, result, metrics, running, time.monotonic()))
            queued = True
        finally:
            if not queued:
                self.engine.finish([entry.deployment_id], recorded=False)

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
            self._queue(Done(entry, result, metrics, running, time.monotonic()))
            queued = True
        except Exception:
            logger.exception("check of %s failed inside the monitor", entry.deployment_id)
        finally:
            if not queued:
                self.engine.finish([entry.deployment_id], recorded=False)

    async def _check(self, entry: MonitoredDeployment, started: float) -> HealthCheckResult:
        plan = entry.plan
        if plan is not None:
            # Checks that bound their own time (the plan checkers, the default HTTP checker).
            if plan.type != "http":
                return await self._plan_checker(plan.type).check(plan, entry.timeout)
            # plan_of() let this plan in only with a checker that carries plans.
            return await cast(PlanHttpChecker, self.checker).check_plan_async(plan, entry.timeout)
        if self._blocking_checker:
            result = await run_check(
                self.blocking, entry.deployment_id, self.checker, entry.url, entry.timeout
            )
            if result.details.get("busy"):
                entry.busy_checks += 1
            return result
        if self._fast is not None:
            return await self.checker.check_health_async(entry.url, entry.timeout)
        bound = entry.timeout + 2.0
        try:
            # A custom async checker may not bound its own time: this bound catches that.
            async with asyncio.timeout(bound):
                return await self.checker.check_health_async(entry.url, entry.timeout)
        except TimeoutError:
            return failure(
                f"timeout: no result within {bound:g}s (timeout {entry.timeout:g}s)",
                (time.monotonic() - started) * 1000.0,
            )
        except Exception as exc:
            return checker_error(exc, started)

    def _monitor_failure(self, result: HealthCheckResult, started: float, stalled: float) -> bool:
        """A failure without an answer while the monitor's own loop stalled is the
        monitor's, not the target's: it is not recorded (overload.py)."""
        if result.success or (result.details and "http_status" in result.details):
            return False
        guard = self.engine.guard
        if result.details.get("checker_saturated"):
            guard.saturated(result.error_message or "every connection busy")
            return True
        return guard.monitor_failure(stalled, time.monotonic() - started)

    # ------------------------------------------------------------ resources
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
                    m = self.resources.get_process_metrics(entry.process_name)
                else:
                    m = await self.blocking.call(
                        f"{entry.deployment_id}\0resources",
                        entry.timeout + GRACE_SECONDS,
                        self.resources.get_process_metrics,
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
            if self._inline_resources and self.system is not None:
                self.system = self.resources.get_system_metrics()
            else:
                self.system = await self.blocking.call(
                    "\0system", self.default_timeout, self.resources.get_system_metrics
                )
        except Busy:
            pass  # its hang was logged once, when it went overdue
        except Exception as exc:
            logger.warning("host resource sample failed: %s", exc)

    # ------------------------------------------------------------ recording
    def _queue(self, done: Done) -> None:
        """Results ended in one loop iteration are recorded together, in one batch."""
        self._pending.append(done)
        if self._flush_handle is None:
            loop = self.engine.loop
            if loop is None:
                self.flush()
            else:
                self._flush_handle = loop.call_soon(self.flush)

    def flush(self) -> None:
        """Record the results waiting for their batch (on the engine's loop)."""
        self._flush_handle = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        recorded = self.record_batch(batch)
        ids = [d.entry.deployment_id for d in batch]
        if all(recorded):
            self.engine.finish(ids, recorded=True)
        else:
            self.engine.finish([i for i, r in zip(ids, recorded, strict=True) if r], recorded=True)
            self.engine.finish(
                [i for i, r in zip(ids, recorded, strict=True) if not r], recorded=False
            )

    def record_batch(self, batch: list[Done]) -> list[bool]:
        """Record results, judge rules and notify: one lock for the whole batch.

        Each result is judged at the moment it arrived (``Done.at``), so a batch gives the
        same counters, alerts and statuses as the same results recorded one at a time
        (tests/test_monitor_batching.py). Returns, per result, whether it was recorded (not
        if its deployment was removed or replaced while it ran).
        """
        recorded: list[bool] = []
        work: list[tuple[MonitoredDeployment, Done, list[AlertEvent], list[AlertEvent]]] = []
        window, flaps, deployments = self.error_rate_window, self.flaps, self._deployments
        alerts = self.alerts
        with self._lock:
            shared = self.thresholds
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
                held = alerts.held(entry, events)
                if events or held or d.metrics is not None or self.listeners:
                    work.append((entry, d, events, held))
            listeners = list(self.listeners) if self.listeners else ()
            self.checked.notify_all()
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
                alerts.emit(entry, ev)
            for firing in held:
                alerts.emit_held(entry, firing, d.result.timestamp)
            for fn in listeners:
                try:
                    fn(entry.deployment_id, d.result)
                except Exception:
                    logger.exception("result listener failed")
        return recorded

    async def loop_cleanup(self) -> None:
        """At the engine's stop, on its loop: record what arrived, release the loop's checks."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self.flush()  # results that arrived before the stop are recorded
        await self.checker.release_loop()
        for checker in self._plan_checkers.values():
            await checker.aclose()

    def _plan_checker(self, kind: str) -> PlanChecker:
        checker = self._plan_checkers.get(kind)
        if checker is None:
            checker = self._plan_checkers[kind] = GrpcChecker() if kind == "grpc" else TcpChecker()
        return checker
