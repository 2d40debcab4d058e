"""Deployment orchestration: the public face of rollouts.

:class:`DeploymentOrchestrator` deploys a version with a strategy (blue-green, canary,
rolling, recreate), gates it on health and traffic, moves real traffic through a
:class:`~.routers.base.TrafficRouter`, rolls back by itself when a gate fails, and hands
every successful deployment to the :class:`~.health_monitoring.DeploymentHealthMonitor`.

>>> from crackseg.utils.deployment.targets.process import ProcessTarget
>>> orchestrator = DeploymentOrchestrator(target=ProcessTarget.for_sample_service())
>>> config = DeploymentConfig("crackseg-model", "production", version="v2", bake_seconds=5)
>>> result = orchestrator.deploy_with_strategy(config, DeploymentStrategy.BLUE_GREEN)
>>> result.success, orchestrator.get_deployment_status(result.deployment_id).state
(True, 'success')

Where new versions come from: either a *target object* (``deploy``/``teardown``, e.g.
:class:`~.targets.process.ProcessTarget`), given to the constructor or as
``deployment_func`` — then the orchestrator also stops old versions — or a plain
``deployment_func(config, **kwargs)`` as in the spec, called with the slot it should
fill: ``environment="blue"``/``"green"`` (blue-green), ``environment="canary"`` and
``traffic_percentage`` (canary), ``replica_index`` and ``total_replicas`` (rolling), plus
the extra keyword arguments of :meth:`DeploymentOrchestrator.deploy_with_strategy`. It
returns a :class:`DeploymentResult`, a dict or a URL saying where the version runs; with a
plain function, stopping old versions is the user's job.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, DeploymentError
from .health_monitoring import DeploymentHealthMonitor
from .models import DeploymentMetadata, DeploymentState, DeploymentStrategy
from .notifiers.base import AlertHandler
from .notifiers.log import LoggingAlertHandler
from .performance import PerformanceMonitor, PerformanceSnapshot
from .routers.base import TrafficRouter
from .routers.callback import CallbackRouter
from .store import HistoryStore
from .strategies import STRATEGIES
from .strategies.base import (
    DeploymentAborted,
    FunctionLauncher,
    Launcher,
    Release,
    RolloutContext,
    Strategy,
    TargetLauncher,
    base_url,
    health_url,
    restore_stable,
)
from .strategies.config import DeploymentConfig, DeploymentResult
from .strategies.gate import GateResult, Verdict
from .targets.base import Instance

__all__ = [
    "AlertHandler",
    "DeploymentAborted",
    "DeploymentConfig",
    "DeploymentMetadata",
    "DeploymentOrchestrator",
    "DeploymentResult",
    "DeploymentState",
    "DeploymentStrategy",
    "GateResult",
    "LoggingAlertHandler",
    "PerformanceMonitor",
    "PerformanceSnapshot",
    "Verdict",
]

logger = logging.getLogger("crackseg.utils.deployment.orchestration")

_MAX_RELEASES = 20


@dataclass
class _Environment:
    name: str
    releases: list[Release] = field(default_factory=list)  # oldest first; [-1] serves
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Old slots kept alive for instant rollback: deployment id -> (timer, stop now).
    standby: dict[str, tuple[threading.Timer, Callable[[], None]]] = field(default_factory=dict)

    @property
    def current(self) -> Release | None:
        return self.releases[-1] if self.releases else None

    @property
    def previous(self) -> Release | None:
        return self.releases[-2] if len(self.releases) > 1 else None


class DeploymentOrchestrator:
    """Deploys versions with a strategy, gated on health, rolling back on its own.

    ``health_monitor`` defaults to a new :class:`DeploymentHealthMonitor` (closed with the
    orchestrator); ``store`` (default: the monitor's) keeps every deployment's record;
    ``router`` moves traffic (one router, or a mapping environment -> router; default: none,
    the user switches traffic); ``target`` starts and stops versions when no
    ``deployment_func`` is given; ``health_checker`` (default: the monitor's) probes new
    instances. Thread-safe: one deployment per environment at a time; :meth:`abort` may
    be called from any thread.
    """

    def __init__(
        self,
        health_monitor: DeploymentHealthMonitor | None = None,
        *,
        store: HistoryStore | None = None,
        router: TrafficRouter | Mapping[str, TrafficRouter] | None = None,
        target: Any = None,
        health_checker: Any = None,
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
        self._envs: dict[str, _Environment] = {}
        self._active: dict[str, RolloutContext] = {}
        self._records: dict[str, DeploymentMetadata] = {}
        self._null_routers: dict[str, CallbackRouter] = {}

    # ------------------------------------------------------------ the spec's monitor face
    def add_deployment_monitoring(self, *args: Any, **kwargs: Any) -> None:
        """Monitor a deployment; same arguments as
        :meth:`DeploymentHealthMonitor.add_deployment_monitoring`."""
        self.health_monitor.add_deployment_monitoring(*args, **kwargs)

    def start_health_monitoring(self) -> None:
        self.health_monitor.start_monitoring()

    def stop_health_monitoring(self) -> None:
        self.health_monitor.stop_monitoring()

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
        self, env: _Environment, config: DeploymentConfig, runner: Strategy, launcher: Launcher
    ) -> DeploymentResult:
        self._release_standby(env)
        stable = env.current
        dep_id = config.deployment_id or f"{config.artifact_id}-{uuid.uuid4().hex[:10]}"
        meta = DeploymentMetadata(
            deployment_id=dep_id,
            artifact_id=config.artifact_id,
            strategy=runner.name,
            target_environment=config.target_environment,
            previous_deployment_id=stable.deployment_id if stable else None,
            version=config.version,
        )
        meta.extra["previous_version"] = stable.version if stable else None
        ctx = RolloutContext(
            config,
            meta,
            launcher,
            self._router(env.name),
            self.health_checker,
            self.store,
            stable,
            on_change=lambda: self._save(meta),
        )
        with self._lock:
            self._records[dep_id] = meta
            self._active[dep_id] = ctx
        self._alert(
            "deployment_started", meta, "info", f"deploying {config.version} ({runner.name})"
        )
        ctx.set_state(DeploymentState.IN_PROGRESS, "started")
        try:
            serving = runner.run(ctx)
        except Exception as exc:
            return self._rolled_back(env, ctx, runner, exc)
        finally:
            with self._lock:
                self._active.pop(dep_id, None)
        release = Release(dep_id, str(config.version), config, launcher, serving, ctx.slot)
        leftovers = ctx.stable_alive()
        with self._lock:
            env.releases.append(release)
            del env.releases[:-_MAX_RELEASES]
        if stable is not None and leftovers:
            self._keep_standby(env, stable, leftovers, config.keep_old_seconds, config.grace_period)
        meta.end_time = time.time()
        ctx.set_state(DeploymentState.SUCCESS, f"{config.version} serves {env.name}")
        self._alert("deployment_success", meta, "info", f"{config.version} serves {env.name}")
        self._monitor(release, meta, replaced=stable)
        return self._result(meta, serving, success=True)

    def _rolled_back(
        self, env: _Environment, ctx: RolloutContext, runner: Strategy, exc: Exception
    ) -> DeploymentResult:
        meta = ctx.metadata
        reason = str(exc) if isinstance(exc, DeploymentError) else f"{type(exc).__name__}: {exc}"
        meta.rollback_reason = meta.error_message = reason
        ctx.set_state(DeploymentState.ROLLING_BACK, reason)
        self._alert("rollback_triggered", meta, "warning", f"rolling back: {reason}")
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
            self._alert("rollback_completed", meta, "info", "previous version serves again")
        else:
            ctx.set_state(DeploymentState.FAILED, f"rollback incomplete: {reason}")
        self._alert("deployment_failure", meta, "critical", reason)
        stable = env.current
        serving = stable.instances if stable else []
        return self._result(meta, serving, success=False, rolled_back=ok)

    def manual_rollback(self, deployment_id: str, timeout: float = 60.0) -> DeploymentResult:
        """Undo ``deployment_id``: traffic back on the version it replaced, it is stopped.

        An in-progress deployment is aborted (and rolls back by itself; this waits up to
        ``timeout``). A deployment that no longer serves its environment cannot be rolled
        back: the result says so.
        """
        meta = self.get_deployment_status(deployment_id)
        if meta is None:
            raise ConfigError("deployment_id", f"unknown deployment {deployment_id!r}")
        env = self._env(meta.target_environment)
        if self.abort(deployment_id):
            got = env.lock.acquire(timeout=timeout)
            if got:
                env.lock.release()
            return self._result(
                meta,
                [],
                success=meta.state == DeploymentState.ROLLED_BACK.value,
                rolled_back=meta.state == DeploymentState.ROLLED_BACK.value,
            )
        if not env.lock.acquire(timeout=timeout):
            return self._result(meta, [], success=False, error="environment busy")
        try:
            current, previous = env.current, env.previous
            if current is None or current.deployment_id != deployment_id:
                return self._result(
                    meta,
                    [],
                    success=False,
                    error=f"{deployment_id} is not what {env.name} serves now",
                )
            if previous is None:
                return self._result(
                    meta,
                    current.instances,
                    success=False,
                    error="no previous version to roll back to",
                )
            kept = env.standby.pop(previous.deployment_id, None)
            if kept is not None:
                kept[0].cancel()
            reason = "manual rollback requested"
            meta.rollback_reason = reason
            ctx = RolloutContext(
                previous.config,
                meta,
                current.launcher,
                self._router(env.name),
                self.health_checker,
                self.store,
                previous,
                on_change=lambda: self._save(meta),
            )
            ctx.new_instances = list(current.instances)
            ctx.set_state(DeploymentState.ROLLING_BACK, reason)
            self._alert("rollback_triggered", meta, "warning", reason)
            ok = restore_stable(ctx)
            if not ok:
                ctx.set_state(DeploymentState.FAILED, "manual rollback incomplete")
                return self._result(
                    meta,
                    previous.instances,
                    success=False,
                    error="the previous version could not be restored",
                )
            with self._lock:
                env.releases.pop()
            ctx.set_state(DeploymentState.ROLLED_BACK, reason)
            self._alert("rollback_completed", meta, "info", f"{previous.version} serves again")
            self.health_monitor.remove_deployment_monitoring(deployment_id)
            prev_meta = self.get_deployment_status(previous.deployment_id)
            if prev_meta is not None:
                self._monitor(previous, prev_meta, replaced=None)
            return self._result(meta, previous.instances, success=True, rolled_back=True)
        finally:
            env.lock.release()

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
        return next(
            (m for m in self.store.deployment_records() if m.deployment_id == deployment_id), None
        )

    def get_deployment_history(self, artifact_id: str | None = None) -> list[DeploymentMetadata]:
        """Every deployment's record, oldest first (in-progress ones included)."""
        return self.store.deployment_records(artifact_id)

    def get_environment(self, name: str) -> dict[str, Any]:
        """What serves ``name`` now and what it would roll back to."""
        env = self._env(name)
        with self._lock:
            cur, prev = env.current, env.previous

        def view(r: Release | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {
                "deployment_id": r.deployment_id,
                "version": r.version,
                "slot": r.slot,
                "instances": [i.address for i in r.instances],
            }

        return {
            "environment": name,
            "current": view(cur),
            "previous": view(prev),
            "routes": [b.address for b in self._router(name).current()],
        }

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop kept-alive old slots now and close the monitor if this orchestrator made it."""
        with self._lock:
            envs = list(self._envs.values())
        for env in envs:
            self._release_standby(env)
        if self._owns_monitor:
            self.health_monitor.close()

    def __enter__(self) -> DeploymentOrchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ helpers
    def _launcher(self, deployment_func: Any, kwargs: dict[str, Any]) -> Launcher:
        source = deployment_func if deployment_func is not None else self.target
        if source is None:
            raise ConfigError("deployment_func", "give a deployment function or a target object")
        if callable(getattr(source, "deploy", None)) and callable(
            getattr(source, "teardown", None)
        ):
            return TargetLauncher(source, kwargs)
        if callable(source):
            return FunctionLauncher(source, kwargs)
        raise ConfigError("deployment_func", "must be callable or have deploy() and teardown()")

    def _env(self, name: str) -> _Environment:
        with self._lock:
            env = self._envs.get(name)
            if env is None:
                env = self._envs[name] = _Environment(name)
            return env

    def _router(self, env: str) -> TrafficRouter:
        if isinstance(self.router, TrafficRouter):
            return self.router
        if isinstance(self.router, Mapping) and env in self.router:
            return self.router[env]
        with self._lock:
            return self._null_routers.setdefault(env, CallbackRouter())

    def _keep_standby(
        self,
        env: _Environment,
        release: Release,
        instances: list[Instance],
        seconds: float,
        grace: float,
    ) -> None:
        def stop() -> None:
            with self._lock:
                if env.standby.pop(release.deployment_id, None) is None:
                    return
            for inst in instances:
                try:
                    release.launcher.stop(inst, grace)
                except Exception:
                    logger.exception("could not stop %s", inst.instance_id)

        timer = threading.Timer(seconds, stop)
        timer.daemon = True
        with self._lock:
            env.standby[release.deployment_id] = (timer, stop)
        timer.start()

    def _release_standby(self, env: _Environment) -> None:
        """Stop old slots kept for instant rollback now (a new deployment supersedes them)."""
        with self._lock:
            pending = list(env.standby.values())
        for timer, stop in pending:
            timer.cancel()
            stop()

    def _monitor(
        self, release: Release, meta: DeploymentMetadata, replaced: Release | None
    ) -> None:
        if replaced is not None:
            self.health_monitor.remove_deployment_monitoring(replaced.deployment_id)
        if not release.instances:
            return
        url = release.config.health_check_url or health_url(release.instances[0])
        self.health_monitor.add_deployment_monitoring(
            release.deployment_id,
            url,
            check_interval=release.config.monitor_interval,
            metadata=meta,
        )

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
        url = router.public_url or (base_url(serving[0]) if serving else meta.deployment_url)
        return DeploymentResult(
            success=success,
            deployment_id=meta.deployment_id,
            artifact_id=meta.artifact_id,
            target_environment=meta.target_environment,
            deployment_url=url,
            health_check_url=meta.health_check_url,
            error_message=error or (None if success else meta.error_message),
            rolled_back=rolled_back,
            metadata=meta,
        )

    def _save(self, meta: DeploymentMetadata) -> None:
        try:
            self.store.save_deployment(DeploymentMetadata.from_dict(meta.to_dict()))
        except Exception:
            # History is a record, not a control path: a broken store must not strand a rollout.
            logger.exception("could not save deployment %s", meta.deployment_id)

    def _alert(
        self, alert_type: str, meta: DeploymentMetadata, severity: str, message: str
    ) -> None:
        now = time.time()
        self.health_monitor.dispatcher.dispatch(
            alert_type,
            DeploymentMetadata.from_dict(meta.to_dict()),
            severity=severity,
            message=message,
            value=None,
            threshold=None,
            state="firing",
            firing=True,
            resolved=False,
            repeat=False,
            started_at=meta.start_time,
            timestamp=now,
            deployment_id=meta.deployment_id,
        )
