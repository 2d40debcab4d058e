"""The orchestrator: a version deployed with a strategy, gated, switched and rolled back.

Public through :mod:`crackseg.utils.deployment.orchestration`, which holds the usage example and
says where new versions come from.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.errors import ConfigError, DeploymentError
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.models import DeploymentMetadata, DeploymentState, DeploymentStrategy
from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor
from crackseg.utils.deployment.rollout.config import DeploymentConfig, DeploymentResult, safe_id
from crackseg.utils.deployment.rollout.context import ProgressFn, Release, RolloutContext
from crackseg.utils.deployment.rollout.environment import Environment, drop_backups
from crackseg.utils.deployment.rollout.launchers import Launcher, launcher_for
from crackseg.utils.deployment.rollout.promotion import Promotions
from crackseg.utils.deployment.rollout.records import Bookkeeping, release_view, result_of
from crackseg.utils.deployment.rollout.recovery import RecordedLauncher, RolloutJournal
from crackseg.utils.deployment.rollout.rollback import restore_stable
from crackseg.utils.deployment.rollout.routers.base import TrafficRouter
from crackseg.utils.deployment.rollout.routers.callback import CallbackRouter
from crackseg.utils.deployment.rollout.strategies import STRATEGIES
from crackseg.utils.deployment.rollout.strategies.base import Strategy
from crackseg.utils.deployment.rollout.targets.base import Instance

__all__ = ["DeploymentOrchestrator"]

logger = logging.getLogger("crackseg.utils.deployment.orchestration")


class DeploymentOrchestrator:
    """Deploys versions with a strategy, gated on health, rolling back on its own.

    ``health_monitor`` defaults to a new :class:`DeploymentHealthMonitor` (closed with the
    orchestrator); ``store`` (default: the monitor's) keeps every deployment's record;
    ``router`` moves traffic (one router, or a mapping environment -> router; default: none,
    the user switches traffic); ``target`` starts and stops versions when no
    ``deployment_func`` is given; ``health_checker`` (default: the monitor's) probes new
    instances; ``progress(label, elapsed, total)`` is told how bake and guard windows
    advance (the CLI draws bars with it). Thread-safe: one deployment per environment at a
    time; :meth:`abort` may be called from any thread.

    A successful deployment is monitored from then on (the monitor is started if it was not)
    and guarded for ``guard_seconds`` in the background: the monitor's alerts on it or the
    router's error rate roll it back to the previous version (reason ``post-promotion: ...``).

    With a SQLite store (or ``rollout_state``, a file path), every rollout writes its step,
    weights and instances (with PIDs) as it goes; a new orchestrator on that file undoes
    the rollouts whose process died (kill -9) before anything else: traffic back on the
    previous version, the new instances stopped by PID, or through ``target`` for those on
    other hosts (:meth:`~.targets.base.DeploymentTarget.stop_recorded`; give the same
    target configuration), state ``rolled_back`` with a reason starting ``interrupted``
    (see :attr:`recovered`; ``extra["left_running"]`` names any it could not stop, and why).
    """

    def __init__(
        self,
        health_monitor: DeploymentHealthMonitor | None = None,
        *,
        store: HistoryStore | None = None,
        router: TrafficRouter | Mapping[str, TrafficRouter] | None = None,
        target: Any = None,
        health_checker: Any = None,
        progress: ProgressFn | None = None,
        rollout_state: str | None = None,
    ) -> None:
        self._owns_monitor = health_monitor is None
        if health_monitor is None:
            health_monitor = DeploymentHealthMonitor(health_checker, store=store)
        self.health_monitor = health_monitor
        self.store: HistoryStore = store if store is not None else health_monitor.store
        self.router = router
        self.target = target
        self.health_checker = health_checker or health_monitor.health_checker
        self._lock = threading.RLock()
        self._envs: dict[str, Environment] = {}
        self._active: dict[str, RolloutContext] = {}
        self._records: dict[str, DeploymentMetadata] = {}
        self._book = Bookkeeping(health_monitor, self.store)
        self._default_routers: dict[str, CallbackRouter] = {}
        self._progress = progress
        self._promotions = Promotions(
            alerts=health_monitor,
            book=self._book,
            router_for=self._router,
            record_of=self._records.get,
            rollback=self._manual_rollback,
            progress=progress,
        )
        self._started_monitor = False
        path = rollout_state or getattr(self.store, "path", None)
        self._journal = RolloutJournal(path, self._book) if isinstance(path, str) else None
        self.recovered: list[DeploymentMetadata] = []
        if self._journal is not None:
            undone = self._journal.recover(self._router, self.health_checker, self.target)
            for meta, previous in undone:
                self.recovered.append(meta)
                if previous is not None:
                    # It serves again: the next deployment replaces it and stops it (by PID,
                    # or through ``target`` on another host).
                    self._env(meta.target_environment).push(previous)

    # ------------------------------------------------------------ the spec's monitor face
    def add_deployment_monitoring(self, *args: Any, **kwargs: Any) -> None:
        """Monitor a deployment; same arguments as
        :meth:`DeploymentHealthMonitor.add_deployment_monitoring`."""
        self.health_monitor.add_deployment_monitoring(*args, **kwargs)

    def start_health_monitoring(self) -> None:
        self.health_monitor.start_monitoring()

    def stop_health_monitoring(self) -> None:
        self.health_monitor.stop_monitoring()
        self._started_monitor = False

    def get_deployment_health_status(self, deployment_id: str) -> dict[str, Any]:
        """The monitor's status dict of a monitored deployment (KeyError if not monitored)."""
        return self.health_monitor.get_deployment_status(deployment_id)

    def get_all_health_statuses(self) -> dict[str, dict[str, Any]]:
        return self.health_monitor.get_all_deployment_statuses()

    def add_alert_handler(self, handler: AlertHandler) -> None:
        """Deliver monitor alerts and deployment events to ``handler`` (one delivery path)."""
        self.health_monitor.add_alert_handler(handler)

    # ------------------------------------------------------------ deployments
    def deploy_with_strategy(
        self,
        config: DeploymentConfig,
        strategy: DeploymentStrategy | str = DeploymentStrategy.BLUE_GREEN,
        deployment_func: Any = None,
        **kwargs: Any,
    ) -> DeploymentResult:
        """Deploy ``config`` with ``strategy``; return once it serves or was rolled back.

        ``deployment_func`` is a plain function or a target object (see the module
        docstring); ``kwargs`` are passed on to it. A failed gate, a dead process, a router
        error, an abort or ``deploy_timeout`` rolls back: traffic returns to the previous
        version and the new one is stopped; ``result.error_message`` and
        ``metadata.rollback_reason`` say why. Raises :class:`ConfigError` for bad arguments
        and :class:`DeploymentError` when the environment is already being deployed.
        """
        if not isinstance(config, DeploymentConfig):
            raise ConfigError("config", "must be a DeploymentConfig")
        try:
            strategy = DeploymentStrategy(strategy)
        except ValueError:
            options = ", ".join(s.value for s in DeploymentStrategy)
            raise ConfigError("strategy", f"unknown {strategy!r}; use one of {options}") from None
        launcher = self._launcher(deployment_func, kwargs)
        env = self._env(config.target_environment)
        if not env.lock.acquire(blocking=False):
            raise DeploymentError(
                f"a deployment to {config.target_environment!r} is in progress; wait or abort it"
            )
        try:
            return self._deploy(env, config, STRATEGIES[strategy](), launcher)
        finally:
            env.lock.release()

    def _deploy(
        self, env: Environment, config: DeploymentConfig, runner: Strategy, launcher: Launcher
    ) -> DeploymentResult:
        self._promotions.end(env.name)  # a new deployment supersedes the last one's guard
        env.release_standby(config.grace_period)
        stable = env.current
        dep_id = config.deployment_id or safe_id(config.artifact_id, uuid.uuid4().hex[:10])
        if self.get_deployment_status(dep_id) is not None:
            raise ConfigError("deployment_id", f"{dep_id!r} was used before; pick a new one")
        meta = DeploymentMetadata(
            deployment_id=dep_id,
            artifact_id=config.artifact_id,
            strategy=runner.name,
            target_environment=config.target_environment,
            previous_deployment_id=stable.deployment_id if stable else None,
            version=config.version,
        )
        meta.extra["previous_version"] = stable.version if stable else None
        ctx = self._context(config, meta, launcher, env, stable)
        if self._journal is not None:
            ctx.on_change = lambda: self._changed(ctx)
        with self._lock:
            self._records[dep_id] = meta
            self._active[dep_id] = ctx
        self._book.alert(
            "deployment_started", meta, "info", f"deploying {config.version} ({runner.name})"
        )
        ctx.set_state(DeploymentState.IN_PROGRESS, "started")
        try:
            serving = runner.run(ctx)
        except Exception as exc:
            result = self._rolled_back(env, ctx, runner, exc)
            self._finished(dep_id)
            return result
        finally:
            with self._lock:
                self._active.pop(dep_id, None)
        self._finished(dep_id)
        release = Release(dep_id, str(config.version), config, launcher, serving, ctx.slot)
        leftovers = ctx.stable_alive()
        env.push(release)
        if stable is not None and leftovers:
            env.keep_standby(
                stable,
                leftovers,
                config.effective_keep_old_seconds,
                config.grace_period,
                before_stop=lambda insts: drop_backups(self._router(env.name), insts),
            )
        meta.end_time = time.time()
        message = f"{config.version} serves {env.name}"
        probes_only = ctx.probes_only()
        if probes_only is not None:
            meta.extra["judged_on_probes_only"] = probes_only
            message += f"; {probes_only}"
        ctx.set_state(DeploymentState.SUCCESS, message)
        self._book.alert("deployment_success", meta, "info", message)
        monitor_ids = self._book.monitor(release, meta, replaced=stable)
        if monitor_ids and not self.health_monitor.monitoring_active:
            # The spec: once deployed, a version is monitored, with no explicit start.
            self.health_monitor.start_monitoring()
            self._started_monitor = True
        if stable is not None and config.guard_seconds > 0:
            self._promotions.start(env, release, meta, monitor_ids, ctx.judging)
        return self._result(meta, serving, success=True)

    def _changed(self, ctx: RolloutContext) -> None:
        self._book.save(ctx.metadata)
        with self._lock:
            running = self._active.get(ctx.metadata.deployment_id) is ctx
        if self._journal is not None and running:
            self._journal.changed(ctx)

    def _finished(self, dep_id: str) -> None:
        if self._journal is not None:
            self._journal.finished(dep_id)

    def _rolled_back(
        self, env: Environment, ctx: RolloutContext, runner: Strategy, exc: Exception
    ) -> DeploymentResult:
        meta = ctx.metadata
        reason = str(exc) if isinstance(exc, DeploymentError) else f"{type(exc).__name__}: {exc}"
        meta.rollback_reason = meta.error_message = reason
        ctx.set_state(DeploymentState.ROLLING_BACK, reason)
        self._book.alert("rollback_triggered", meta, "warning", f"rolling back: {reason}")
        t0 = time.monotonic()
        try:
            ok = runner.rollback(ctx)
        except Exception as rb_exc:  # the record must still say what happened
            logger.exception("rollback of %s failed", meta.deployment_id)
            ctx.note("rollback_error", error=f"{type(rb_exc).__name__}: {rb_exc}")
            ok = False
        meta.extra["rollback_seconds"] = round(time.monotonic() - t0, 3)
        meta.end_time = time.time()
        if ok:
            ctx.set_state(DeploymentState.ROLLED_BACK, reason)
            self._book.alert("rollback_completed", meta, "info", "previous version serves again")
        else:
            ctx.set_state(DeploymentState.FAILED, f"rollback incomplete: {reason}")
        self._book.alert("deployment_failure", meta, "critical", reason)
        stable = env.current
        return self._result(meta, stable.instances if stable else [], success=False, rolled_back=ok)

    def manual_rollback(self, deployment_id: str, timeout: float = 60.0) -> DeploymentResult:
        """Undo ``deployment_id``: traffic back on the version it replaced, it is stopped.

        The previous version's old slot is reused while it is kept alive
        (``keep_old_seconds``), else started again and gated first. An in-progress
        deployment is aborted instead (it rolls back by itself; this waits up to
        ``timeout``). A deployment that no longer serves its environment cannot be rolled
        back: the result says so. Raises :class:`ConfigError` for an unknown id.
        """
        meta = self.get_deployment_status(deployment_id)
        if meta is None:
            raise ConfigError("deployment_id", f"unknown deployment {deployment_id!r}")
        env = self._env(meta.target_environment)
        if self.abort(deployment_id):
            if env.lock.acquire(timeout=timeout):
                env.lock.release()
            done = meta.state == DeploymentState.ROLLED_BACK.value
            return self._result(meta, [], success=done, rolled_back=done)
        if not env.lock.acquire(timeout=timeout):
            return self._result(meta, [], success=False, error="environment busy")
        try:
            return self._manual_rollback(env, meta)
        finally:
            env.lock.release()

    def _manual_rollback(
        self, env: Environment, meta: DeploymentMetadata, reason: str = "manual rollback requested"
    ) -> DeploymentResult:
        current, previous = env.current, env.previous
        if current is None or current.deployment_id != meta.deployment_id:
            error = f"{meta.deployment_id} is not what {env.name} serves now"
            return self._result(meta, [], success=False, error=error)
        if previous is None:
            error = "no previous version to roll back to"
            return self._result(meta, current.instances, success=False, error=error)
        self._promotions.end(env.name, meta.deployment_id)
        env.claim_standby(previous)
        meta.rollback_reason = reason
        ctx = self._context(previous.config, meta, current.launcher, env, previous)
        ctx.new_instances = list(current.instances)
        ctx.set_state(DeploymentState.ROLLING_BACK, reason)
        self._book.alert("rollback_triggered", meta, "warning", reason)
        t0 = time.monotonic()
        if not restore_stable(ctx):
            ctx.set_state(DeploymentState.FAILED, "manual rollback incomplete")
            error = "the previous version could not be restored"
            return self._result(meta, previous.instances, success=False, error=error)
        env.pop()
        meta.extra["rollback_seconds"] = round(time.monotonic() - t0, 3)
        ctx.set_state(DeploymentState.ROLLED_BACK, reason)
        self._book.alert("rollback_completed", meta, "info", f"{previous.version} serves again")
        prev_meta = self.get_deployment_status(previous.deployment_id)
        if prev_meta is not None:
            self._book.monitor(previous, prev_meta, replaced=current)
        return self._result(meta, previous.instances, success=True, rolled_back=True)

    def abort(self, deployment_id: str) -> bool:
        """Ask an in-progress deployment to stop and roll back; False if it is not running."""
        with self._lock:
            ctx = self._active.get(deployment_id)
        if ctx is None:
            return False
        ctx.abort_event.set()
        return True

    # ------------------------------------------------------------ queries
    def get_deployment_status(self, deployment_id: str) -> DeploymentMetadata | None:
        """The record of a deployment (live while it runs), or None if unknown."""
        with self._lock:
            meta = self._records.get(deployment_id)
        if meta is not None:
            return meta
        records = self.store.deployment_records()
        return next((m for m in records if m.deployment_id == deployment_id), None)

    def get_deployment_history(self, artifact_id: str | None = None) -> list[DeploymentMetadata]:
        """Every deployment's record, oldest first (in-progress ones included)."""
        return self.store.deployment_records(artifact_id)

    def get_environment(self, name: str) -> dict[str, Any]:
        """What serves ``name`` now, what it would roll back to, and the routed backends."""
        env = self._env(name)

        return {
            "environment": name,
            "current": release_view(env.current),
            "previous": release_view(env.previous),
            "routes": [
                f"{b.address}={'backup' if b.backup else b.weight}"
                for b in self._router(name).current()
            ],
        }

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Abort running deployments, stop kept-alive old slots now, and close the monitor
        if this orchestrator made it. The versions serving are left running: their owner
        stops them (its target's close, and :meth:`stop_adopted` for those taken over)."""
        with self._lock:
            envs = list(self._envs.values())
            active = list(self._active.values())
        for ctx in active:
            ctx.abort_event.set()
        for name in [e.name for e in envs]:
            self._promotions.end(name)
        for env in envs:
            if env.lock.acquire(timeout=60.0):
                env.lock.release()
            env.release_standby(10.0)
        if self._owns_monitor:
            self.health_monitor.close()
        elif self._started_monitor:
            self.stop_health_monitoring()
        if self._journal is not None:
            self._journal.close()

    def stop_adopted(self, grace: float = 10.0) -> int:
        """Stop the instances of the versions taken over at start from a process that died
        (see :attr:`recovered`); returns how many were stopped. No target of this process
        started them, so closing the target does not stop them: an owner that stops what
        it serves when it stops (the service) calls this after :meth:`close` and before
        closing ``target`` (which stops those on other hosts)."""
        with self._lock:
            releases = [r for env in self._envs.values() for r in list(env.releases)]
        adopted = [r for r in releases if isinstance(r.launcher, RecordedLauncher)]
        for release in adopted:
            for inst in list(release.instances):
                release.launcher.stop(inst, grace)
        return sum(len(r.instances) for r in adopted)

    def __enter__(self) -> DeploymentOrchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ helpers
    def _launcher(self, deployment_func: Any, kwargs: dict[str, Any]) -> Launcher:
        return launcher_for(deployment_func if deployment_func is not None else self.target, kwargs)

    def _context(
        self,
        config: DeploymentConfig,
        meta: DeploymentMetadata,
        launcher: Launcher,
        env: Environment,
        stable: Release | None,
    ) -> RolloutContext:
        return RolloutContext(
            config,
            meta,
            launcher,
            self._router(env.name),
            self.health_checker,
            self.store,
            stable,
            on_change=lambda: self._book.save(meta),
            on_progress=self._progress,
        )

    def _env(self, name: str) -> Environment:
        with self._lock:
            env = self._envs.get(name)
            if env is None:
                env = self._envs[name] = Environment(name)
            return env

    def _router(self, env: str) -> TrafficRouter:
        if isinstance(self.router, TrafficRouter):
            return self.router
        if isinstance(self.router, Mapping) and env in self.router:
            return self.router[env]
        with self._lock:
            return self._default_routers.setdefault(env, CallbackRouter())

    def _result(
        self,
        meta: DeploymentMetadata,
        serving: list[Instance],
        *,
        success: bool,
        rolled_back: bool = False,
        error: str | None = None,
    ) -> DeploymentResult:
        router = self._router(meta.target_environment)
        return result_of(meta, serving, router, success, rolled_back, error)
