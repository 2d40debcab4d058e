"""Rollouts run by the service: the config's ``deploy`` section, driven through the API.

:class:`RolloutManager` lives in ``crackseg-monitor run`` (one long-lived process owns the
instances, the router and the store): ``POST /api/v1/rollouts`` starts a rollout in the
background, ``POST /api/v1/environments/{env}/rollback`` undoes the last one, and every
run's progress is an :class:`~.rollout_events.EventLog` the API streams as server-sent
events. One rollout (or rollback) at a time: another is refused with :class:`RolloutBusy`,
naming the one in progress.

Built over the service's monitor and its SQLite store, the orchestrator undoes at start the
rollouts a killed service left half-way (traffic back on the previous version, the new
instances stopped by PID): :attr:`RolloutManager.recovered`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crackseg.utils.deployment.errors import (
    ConfigError,
    ConfigProblems,
    CrackSegDeploymentError,
)
from crackseg.utils.deployment.models import DeploymentMetadata, DeploymentStrategy
from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor
from crackseg.utils.deployment.service.config import DeployConfig
from crackseg.utils.deployment.service.rollout_events import EventLog

__all__ = ["FOLLOW_INTERVAL", "MAX_RUNS", "RolloutBusy", "RolloutManager", "Run"]

logger = logging.getLogger("crackseg.utils.deployment.service.rollouts")

#: Runs (with their event logs) kept in memory; older ones are read from the store.
MAX_RUNS = 64
#: Seconds between two looks at a running rollout's record for new steps.
FOLLOW_INTERVAL = 0.1


class RolloutBusy(CrackSegDeploymentError):
    """A rollout is already running in the environment: :attr:`run` is that one."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"a rollout is in progress: {run.describe()}; retry once it ends")
        self.run = run


@dataclass
class Run:
    """One rollout (``kind`` ``deploy``) or rollback asked of the service."""

    id: str
    kind: str
    deployment_id: str
    environment: str
    version: str | None
    strategy: str | None
    started: float = field(default_factory=time.time)
    events: EventLog = field(default_factory=EventLog)
    #: Set when it ended: ``success``, ``rolled_back``, ``error``.
    outcome: dict[str, Any] | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    #: The rollouts whose steps it shows (a first deploy of ``stable_version``, then its own).
    follows: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.follows = self.follows or [self.deployment_id]

    def describe(self) -> str:
        what = f"deploy {self.version}" if self.kind == "deploy" else "rollback"
        return f"{what} ({self.id})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "deployment_id": self.deployment_id,
            "environment": self.environment, "version": self.version,
            "strategy": self.strategy, "started": self.started,
            "running": self.outcome is None, "outcome": self.outcome,
            "last_event_id": self.events.last_seq,
        }  # fmt: skip


class RolloutManager:
    """Runs the rollouts and rollbacks of ``config.deploy`` over ``monitor`` (and its store).

    ``state_dir`` holds what the router writes (its nginx files). The instances and the
    router belong to the manager: :meth:`close` stops them.

    >>> manager = RolloutManager(cfg.deploy, monitor, Path("history.deploy"))  # doctest: +SKIP
    >>> run = manager.start("v2")                                               # background
    """

    def __init__(
        self, deploy: DeployConfig, monitor: DeploymentHealthMonitor, state_dir: Path
    ) -> None:
        from crackseg.utils.deployment.rollout.orchestrator import DeploymentOrchestrator
        from crackseg.utils.deployment.service.deploy_target import build_router, build_target

        self.deploy = deploy
        self.state_dir = state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._active: Run | None = None
        self._last_progress: tuple[str, int] | None = None
        self.target = build_target(self.deploy)
        try:
            self.router = build_router(self.deploy, self.state_dir / "nginx")
        except BaseException:
            self.target.close()
            raise
        try:
            # Undoes, before anything else, the rollouts a killed service left half-way.
            self.orchestrator = DeploymentOrchestrator(
                monitor, router=self.router, target=self.target, progress=self._progress
            )
        except BaseException:
            self.target.close()
            if self.router is not None:
                self.router.close()
            raise
        #: Records of the rollouts undone at start (interrupted by the death of the service).
        self.recovered: list[DeploymentMetadata] = list(self.orchestrator.recovered)
        for meta in self.recovered:
            logger.warning(
                "undid rollout %s interrupted by the last stop: %s", meta.deployment_id, meta.state
            )

    @property
    def public_url(self) -> str | None:
        """Where the router serves the deployed version (None without a router)."""
        return self.router.public_url if self.router is not None else None

    # ------------------------------------------------------------ asking
    def start(
        self, version: str, strategy: str | None = None, options: dict[str, Any] | None = None
    ) -> Run:
        """Start rolling out ``version`` in the background; :class:`RolloutBusy` while one
        runs, :class:`ConfigError` (naming the field) for a bad version, strategy or option."""
        from crackseg.utils.deployment.rollout.config import check_version, safe_id

        found = ConfigProblems()  # every problem of the request in one error
        with found.check():
            check_version(version, "version")
        name = strategy or self.deploy.strategy.value
        if name not in {s.value for s in DeploymentStrategy}:
            choices = ", ".join(s.value for s in DeploymentStrategy)
            found.add("strategy", f"unknown {name!r}; use one of {choices}")
        deploy = self.deploy
        with found.check("options."):
            deploy = self._with_options(options) if options else self.deploy
        found.raise_any()
        dep_id = safe_id(self.deploy.name, version, uuid.uuid4().hex[:6])
        with found.check("options."):
            rollout = deploy.deployment_config(version, dep_id)
        found.raise_any()
        run = Run(dep_id, "deploy", dep_id, deploy.environment, version, name)
        stable = deploy.stable_version
        first = None
        if stable and stable != version and self._serving(deploy.environment) is None:
            # ``stable_version`` is deployed first when nothing serves yet, in the same run:
            # the new version then has a previous one to be compared with and rolled back to.
            first = deploy.deployment_config(stable, safe_id(deploy.name, stable, dep_id[-6:]))
            run.follows.insert(0, str(first.deployment_id))

        def work() -> Any:
            if first is not None:
                done = self.orchestrator.deploy_with_strategy(first, name)
                if not done.success:
                    return done
            return self.orchestrator.deploy_with_strategy(rollout, name)

        self._launch(run, work)
        return run

    def _with_options(self, options: dict[str, Any]) -> DeployConfig:
        """The ``deploy`` section with ``options`` over its ``rollout`` keys, checked as the
        file's are: :class:`ConfigError` naming every key at fault."""
        from pydantic import ValidationError

        from crackseg.utils.deployment.service.config import RolloutOptions
        from crackseg.utils.deployment.service.config_deploy import rollout_problems
        from crackseg.utils.deployment.validation import problems

        merged = {**self.deploy.rollout.model_dump(exclude_unset=True), **options}
        together = rollout_problems(merged, self.deploy.target.health_path)
        try:
            rollout = RolloutOptions.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError.of(problems(exc, RolloutOptions) + together) from None
        if together:
            raise ConfigError.of(together)
        return self.deploy.model_copy(update={"rollout": rollout})

    def rollback(self, environment: str) -> Run:
        """Undo what ``environment`` serves now, in the background (:class:`RolloutBusy`
        while a rollout runs; :class:`ConfigError` when there is nothing to undo)."""
        self._check_environment(environment)
        with self._lock:
            if self._active is not None:
                raise RolloutBusy(self._active)
        current = self._serving(environment)
        if current is None:
            raise ConfigError("environment", f"{environment!r} serves no rollout of this service")
        dep_id = str(current["deployment_id"])
        run = Run(
            f"rollback-{uuid.uuid4().hex[:12]}", "rollback", dep_id, environment,
            current.get("version"), None,
        )  # fmt: skip
        self._launch(run, lambda: self.orchestrator.manual_rollback(dep_id))
        return run

    def abort(self, run_id: str) -> bool:
        """Ask the running rollout ``run_id`` to stop and roll back; False when not running."""
        run = self.get(run_id)
        if run is None or run.outcome is not None or run.kind != "deploy":
            return False
        return bool(self.orchestrator.abort(run.deployment_id))

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def active(self) -> Run | None:
        with self._lock:
            return self._active

    def record(self, deployment_id: str) -> DeploymentMetadata | None:
        """The rollout's record (live while it runs, else from the store)."""
        meta: DeploymentMetadata | None = self.orchestrator.get_deployment_status(deployment_id)
        return meta

    def records(self) -> list[DeploymentMetadata]:
        """Every rollout's record, oldest first."""
        return list(self.orchestrator.get_deployment_history())

    def environment(self, name: str) -> dict[str, Any]:
        self._check_environment(name)
        return dict(self.orchestrator.get_environment(name))

    def _serving(self, environment: str) -> dict[str, Any] | None:
        """What ``environment`` serves now (deployment id, version...), or None."""
        current: dict[str, Any] | None = self.orchestrator.get_environment(environment)["current"]
        return current

    def _check_environment(self, name: str) -> None:
        if name != self.deploy.environment:
            raise LookupError(f"no environment {name!r}; this service deploys to "
                              f"{self.deploy.environment!r}")  # fmt: skip

    # ------------------------------------------------------------ running
    def _launch(self, run: Run, work: Any) -> None:
        with self._lock:
            if self._active is not None:
                raise RolloutBusy(self._active)
            self._active = run
            self._runs[run.id] = run
            while len(self._runs) > MAX_RUNS:
                oldest = next(iter(self._runs))
                if self._runs[oldest] is run:
                    break
                del self._runs[oldest]
        self._last_progress = None
        run.events.publish("started", run.to_dict())
        threading.Thread(
            target=self._run, args=(run, work), name=f"rollout-{run.id}", daemon=True
        ).start()

    def _run(self, run: Run, work: Any) -> None:
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["result"] = work()
            except Exception as exc:
                box["error"] = exc

        worker = threading.Thread(target=call, name=f"rollout-work-{run.id}", daemon=True)
        try:
            self._follow(run, worker)
            run.outcome = self._outcome(run, box)
        except Exception as exc:  # a broken follower must still end the run
            logger.exception("rollout %s: following its progress failed", run.id)
            run.outcome = {"success": False, "rolled_back": False, "error": str(exc)}
        finally:
            with self._lock:
                if self._active is run:
                    self._active = None
            if run.outcome is None:
                run.outcome = {"success": False, "rolled_back": False, "error": "interrupted"}
            run.ended.set()
            run.events.publish("done", {**run.outcome, "id": run.id})

    def _outcome(self, run: Run, box: dict[str, Any]) -> dict[str, Any]:
        from crackseg.utils.deployment.redact import redact_text

        if "error" in box:
            return {"success": False, "rolled_back": False, "error": redact_text(str(box["error"]))}
        result = box["result"]
        meta = self.record(run.deployment_id)
        out: dict[str, Any] = {
            "success": bool(result.success),
            "rolled_back": bool(result.rolled_back),
            "error": redact_text(result.error_message) if result.error_message else None,
            "state": meta.state if meta is not None else None,
            "version": run.version,
        }
        if run.kind == "deploy" and result.success:
            out["serving_at"] = self.public_url or result.deployment_url
        return out

    def _entries(self, dep_id: str) -> list[tuple[float, str, dict[str, Any]]]:
        """The record's state changes and steps, in time order."""
        from crackseg.utils.deployment.redact import redact_text

        meta = self.record(dep_id)
        entries: list[tuple[float, str, dict[str, Any]]] = []
        if meta is None:
            return entries
        for c in list(meta.state_history):
            reason = redact_text(c.reason) if c.reason else None
            entries.append((c.timestamp, "state", {"state": str(c.state), "reason": reason}))
        for step in list(meta.extra.get("steps", [])):
            if step.get("step") == "look":
                continue  # the judge's brief notes: sent live as ``evidence`` events instead
            facts = {k: redact_text(v) if isinstance(v, str) else v for k, v in step.items()}
            entries.append((float(step.get("at", 0.0)), "step", facts))
        return sorted(entries, key=lambda e: e[0])

    def _follow(self, run: Run, worker: threading.Thread) -> None:
        """Start ``worker`` and publish the record's new entries until it ends."""

        def key(e: tuple[float, str, dict[str, Any]]) -> str:
            return f"{e[0]}|{e[1]}|{sorted(e[2].items())}"

        def entries() -> list[tuple[float, str, dict[str, Any]]]:
            return [e for dep_id in run.follows for e in self._entries(dep_id)]

        seen = {key(e) for e in entries()}  # a rollback's: its rollout
        shown: dict[str, Any] = {}
        worker.start()
        while True:
            alive = worker.is_alive()
            for entry in entries():
                k = key(entry)
                if k not in seen:
                    seen.add(k)
                    run.events.publish(entry[1], {"at": entry[0], **entry[2]})
            for dep_id in run.follows:
                meta = self.record(dep_id)
                live = meta.extra.get("live_evidence") if meta is not None else None
                if isinstance(live, dict) and live != shown.get(dep_id):
                    shown[dep_id] = dict(live)
                    data = {"label": str(live.get("label")), "text": str(live.get("text"))}
                    run.events.publish("evidence", data)
            if not alive:
                return
            worker.join(FOLLOW_INTERVAL)

    def _progress(self, label: str, elapsed: float, total: float) -> None:
        """The orchestrator's bake and guard windows, as ``progress`` events of the run
        (about one a second: a follower's queue is bounded)."""
        run = self._active
        if run is None or run.events.closed:
            return  # the guard of a rollout that ended: nobody follows it
        mark = (label, int(elapsed))
        if mark == self._last_progress and elapsed < total:
            return
        self._last_progress = mark
        data = {"label": label, "elapsed": round(elapsed, 2), "total": total}
        with contextlib.suppress(RuntimeError):  # it ended between the check and now
            run.events.publish("progress", data)

    # ------------------------------------------------------------ stopping
    def close(self, timeout: float = 60.0) -> None:
        """Abort a running rollout (it rolls back), wait up to ``timeout`` for it, then stop
        every instance (those the target started, and those taken over at start from a
        service that died) and the router: nothing the service ran outlives its stop."""
        run = self.active()
        if run is not None:
            if run.kind == "deploy":
                self.orchestrator.abort(run.deployment_id)
            run.ended.wait(timeout)
        # Run last to first, each despite a failure: traffic stops (the router drains, or a
        # host's nginx answers 503) before the versions behind it do.
        with contextlib.ExitStack() as later:
            later.callback(self.target.close)
            later.callback(self.orchestrator.stop_adopted, self.deploy.target.grace_period)
            if self.router is not None:
                later.callback(self.router.close)
            self.orchestrator.close()
