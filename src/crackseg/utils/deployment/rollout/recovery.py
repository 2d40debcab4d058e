"""Rollouts that outlive their process: the state written at each step, and its undoing.

:func:`rollout_state` is what a rollout writes to the :class:`RolloutStateStore` at every
step: its record, the router's weights, the new instances and the previous version's, each
with its PID and process start time and what its target needs to find it again (its
``extra``: an SSH instance's host, remote PID and start time). :func:`undo_interrupted` is
what the next orchestrator on the same store does with a rollout whose process died:
traffic back on the previous version, the new instances stopped by their recorded PIDs, or
by the orchestrator's target for those with no PID on this machine (a fresh target did not
start them: :meth:`~.targets.base.DeploymentTarget.stop_recorded`), the record
``rolled_back`` with a reason starting ``interrupted``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from crackseg.utils.deployment.errors import DeploymentError
from crackseg.utils.deployment.history.sqlite.rollouts import RolloutStateStore
from crackseg.utils.deployment.models import DeploymentMetadata, DeploymentState
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker
from crackseg.utils.deployment.redact import is_secret_key, redact_text
from crackseg.utils.deployment.rollout.config import DeploymentConfig
from crackseg.utils.deployment.rollout.context import Release, RolloutContext
from crackseg.utils.deployment.rollout.launchers import Launcher, describe, health_url
from crackseg.utils.deployment.rollout.records import Bookkeeping
from crackseg.utils.deployment.rollout.routers.base import Backend, TrafficRouter
from crackseg.utils.deployment.rollout.targets.base import Instance

__all__ = [
    "RecordedLauncher",
    "RolloutJournal",
    "adopt_previous",
    "instance_state",
    "recorded_extra",
    "rollout_state",
    "stop_instance",
    "stop_recorded",
    "undo_interrupted",
]

logger = logging.getLogger("crackseg.utils.deployment.orchestration")

_ENDED = frozenset(
    s.value for s in (DeploymentState.SUCCESS, DeploymentState.ROLLED_BACK, DeploymentState.FAILED)
)


def instance_state(inst: Instance) -> dict[str, Any]:
    """An instance as recorded: where it runs and which process it is (PID + start time, so
    that a reused PID is never taken for it), with the JSON-safe part of its ``extra`` that
    its target finds it again by (see :func:`recorded_extra`)."""
    state = describe(inst)
    state["health_url"] = health_url(inst)
    if inst.pid is not None:
        if "create_time" not in inst.extra:
            try:
                inst.extra["create_time"] = psutil.Process(inst.pid).create_time()
            except psutil.Error:
                inst.extra["create_time"] = None
        state["create_time"] = inst.extra["create_time"]
    state["extra"] = recorded_extra(inst.extra)
    return state


def recorded_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an instance's ``extra`` fit for the state file: plain values only (a
    target's objects stay out), none under a secret-looking key, credentials in text
    masked. A target puts what finds its instance again in plain values (host, PID...)."""
    kept: dict[str, Any] = {}
    for key, value in extra.items():
        if not isinstance(key, str) or is_secret_key(key):
            continue
        if value is None or isinstance(value, bool | int | float):
            kept[key] = value
        elif isinstance(value, str):
            kept[key] = redact_text(value)
    return kept


def rollout_state(ctx: RolloutContext) -> dict[str, Any]:
    meta = ctx.metadata
    previous = ctx.stable
    return {
        "deployment_id": meta.deployment_id,
        "environment": meta.target_environment,
        "metadata": meta.to_dict(),
        "routes": [
            {"address": b.address, "weight": b.weight, "label": b.label, "backup": b.backup}
            for b in ctx.router.current()
        ],
        "new_instances": [instance_state(i) for i in ctx.new_instances],
        "previous": None
        if previous is None
        else {
            "deployment_id": previous.deployment_id,
            "version": previous.version,
            "instances": [instance_state(i) for i in previous.instances],
        },
    }


def _process(info: dict[str, Any]) -> psutil.Process | None:
    """The recorded instance's process if it still runs (and is the same process)."""
    pid = info.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        started = info.get("create_time")
        if isinstance(started, int | float) and abs(proc.create_time() - started) > 1.0:
            return None  # the PID now belongs to another process
        return proc
    except psutil.Error:
        return None


def stop_recorded(info: dict[str, Any], grace: float) -> bool:
    """Stop a recorded instance by PID (its process group: SIGTERM, SIGKILL after ``grace``).
    True when it no longer runs; False when it has no PID to stop it by."""
    if not isinstance(info.get("pid"), int):
        return False
    proc = _process(info)
    if proc is None:
        return True
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except psutil.Error:
                return True
        try:
            proc.wait(grace if sig is signal.SIGTERM else 5.0)
            return True
        except psutil.TimeoutExpired:
            continue
        except psutil.Error:
            return True
    return not proc.is_running()


def stop_instance(info: Mapping[str, Any], grace: float, target: Any = None) -> str | None:
    """Stop a recorded instance: by its PID when it has one on this machine, else through
    ``target``'s :meth:`~.targets.base.DeploymentTarget.stop_recorded`. None once it no
    longer runs; else why it could not be stopped (it may still run)."""
    if isinstance(info.get("pid"), int):
        return None if stop_recorded(dict(info), grace) else "its process did not stop"
    stop = getattr(target, "stop_recorded", None)
    if not callable(stop):
        return "no PID on this machine and no deployment target to stop it through"
    try:
        done = stop(info, grace)
    except Exception as exc:
        return redact_text(f"{type(target).__name__} could not stop it: {exc}")
    if done is None:
        return f"no PID on this machine and {type(target).__name__} does not know it"
    return None if done else f"{type(target).__name__} could not stop it"


class RecordedLauncher(Launcher):
    """The instances of a version that a process which died had started: watched and stopped
    by their recorded PID, or through ``target`` (the orchestrator's) for those with none on
    this machine (a remote host's); never started again."""

    def __init__(self, target: Any = None) -> None:
        self.target = target

    def start(self, config: DeploymentConfig, *, environment: str, **slot: Any) -> Instance:
        raise DeploymentError(
            f"{config.version} was recovered from an interrupted rollout and cannot be "
            "restarted from here; deploy it again"
        )

    def stop(self, instance: Instance, grace_period: float) -> None:
        why = stop_instance(instance_state(instance), grace_period, self.target)
        if why is not None:
            logger.error("could not stop %s (%s): %s", instance.instance_id, instance.address, why)

    def is_alive(self, instance: Instance) -> bool:
        """Whether its process runs; True when unknowable (the health probe judges then)."""
        return _alive(instance_state(instance), self.target) is not False


def _alive(info: Mapping[str, Any], target: Any) -> bool | None:
    """Whether a recorded instance runs: by its local PID, else as its target says (None:
    nobody can tell)."""
    if isinstance(info.get("pid"), int):
        return _process(dict(info)) is not None
    ask = getattr(target, "is_alive_recorded", None)
    if not callable(ask):
        return None
    try:
        answer = ask(info)
    except Exception:
        logger.exception("cannot tell whether %s runs", info.get("instance_id"))
        return None
    return None if answer is None else bool(answer)


def adopt_previous(row: dict[str, Any], serving: list[str], target: Any = None) -> Release | None:
    """The previous version of an undone rollout as a release of its environment (the
    instances at ``serving`` addresses), so the next deployment replaces and stops it (by
    PID, or through ``target`` for instances with none on this machine)."""
    previous = row.get("previous")
    if previous is None:
        return None
    instances = []
    for info in previous["instances"]:
        if info["address"] not in serving:
            continue
        host, _, port = str(info["address"]).rpartition(":")
        inst = Instance(
            instance_id=str(info["instance_id"]),
            version=str(previous["version"]),
            host=host,
            port=int(port),
            pid=info.get("pid"),
            log_path=info.get("log_path"),
            environment=str(info.get("environment") or ""),
            extra={
                **(info.get("extra") or {}),
                "health_check_url": info["health_url"],
                "create_time": info.get("create_time"),
            },
        )
        instances.append(inst)
    if not instances:
        return None
    meta = row["metadata"]
    config = DeploymentConfig(
        str(meta.get("artifact_id") or "recovered"),
        str(row["environment"]),
        version=str(previous["version"]),
        deployment_id=str(previous["deployment_id"]),
    )
    slot = instances[0].environment
    return Release(
        str(previous["deployment_id"]),
        config.version or "",
        config,
        RecordedLauncher(target),
        instances,
        slot,
    )


def undo_interrupted(
    row: dict[str, Any],
    router: TrafficRouter,
    checker: HealthChecker,
    book: Bookkeeping,
    grace: float = 10.0,
    target: Any = None,
) -> DeploymentMetadata:
    """Undo one interrupted rollout (see the module doc); returns its final record. New
    instances that could not be stopped are listed in ``extra["left_running"]`` (address,
    instance id and why)."""
    meta = DeploymentMetadata.from_dict(row["metadata"])
    last = meta.state_history[-1].reason if meta.state_history else None
    reason = f"interrupted: the process running it died ({meta.state}{f': {last}' if last else ''})"
    meta.rollback_reason = meta.error_message = reason
    meta.set_state(DeploymentState.ROLLING_BACK, reason)
    book.save(meta)
    book.alert("rollback_triggered", meta, "warning", f"rolling back: {reason}")
    t0 = time.monotonic()
    previous = row.get("previous")
    restored = previous is None  # a first deployment: stopping it is the whole undo
    if previous is not None:
        serving = []
        for info in previous["instances"]:
            if _alive(info, target) is False:
                continue
            if checker.check_health(info["health_url"], timeout=2).success:
                serving.append(Backend(info["address"], 1, str(previous["version"])))
        if serving:
            try:
                router.apply(serving)
                restored = True
            except Exception as exc:
                meta.extra["rollback_error"] = f"{type(exc).__name__}: {exc}"
    left = []
    for info in row["new_instances"]:
        why = stop_instance(info, grace, target)
        if why is not None:
            left.append(
                {"address": info["address"], "instance_id": info["instance_id"], "why": why}
            )
            logger.error("%s: %s left running: %s", meta.deployment_id, info["address"], why)
    if left:
        meta.extra["left_running"] = left
    meta.extra["rollback_seconds"] = round(time.monotonic() - t0, 3)
    meta.end_time = time.time()
    if restored:
        meta.set_state(DeploymentState.ROLLED_BACK, reason)
        book.alert("rollback_completed", meta, "info", "previous version serves again")
    else:
        meta.set_state(DeploymentState.FAILED, f"rollback incomplete: {reason}")
    book.alert("deployment_failure", meta, "critical", reason)
    book.save(meta)
    logger.warning("%s: %s; %s", meta.deployment_id, reason, meta.state)
    return meta


class RolloutJournal:
    """The orchestrator's use of a :class:`RolloutStateStore`: write each step, clear a
    rollout that ended, undo the interrupted ones at start. A failure to write is logged
    loudly and never stops a rollout (the record store still has its story)."""

    def __init__(self, path: str, book: Bookkeeping) -> None:
        self.state = RolloutStateStore(path)
        self.book = book

    def recover(
        self, router_of: Callable[[str], TrafficRouter], checker: HealthChecker, target: Any = None
    ) -> list[tuple[DeploymentMetadata, Release | None]]:
        """Undo every interrupted rollout, stopping instances with no local PID through
        ``target``; each record, with the previous version now serving its environment
        (None when there was none or it could not be restored)."""
        undone: list[tuple[DeploymentMetadata, Release | None]] = []
        for row in self.state.interrupted():
            if row["metadata"].get("state") not in _ENDED:  # else it died after it ended
                try:
                    router = router_of(row["environment"])
                    meta = undo_interrupted(row, router, checker, self.book, target=target)
                    restored = meta.state == DeploymentState.ROLLED_BACK.value
                    serving = [b.address for b in router.current()] if restored else []
                    undone.append((meta, adopt_previous(row, serving, target)))
                except Exception:
                    logger.exception("could not undo interrupted rollout %s", row["deployment_id"])
                    continue
            self.state.finish(row["deployment_id"])
        return undone

    def changed(self, ctx: RolloutContext) -> None:
        try:
            meta = ctx.metadata
            self.state.save(meta.deployment_id, meta.target_environment, rollout_state(ctx))
        except Exception:
            logger.exception("could not persist the state of %s", ctx.metadata.deployment_id)

    def finished(self, deployment_id: str) -> None:
        try:
            self.state.finish(deployment_id)
        except Exception:
            logger.exception("could not clear the state of %s", deployment_id)

    def close(self) -> None:
        self.state.close()
