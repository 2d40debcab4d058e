"""What every strategy stands on: releases, the rollout context and rollback.

A strategy is an ordered list of steps over observed state: start instances through a
:class:`Launcher`, gate them (:meth:`RolloutContext.wait_healthy`), move traffic
(:meth:`RolloutContext.route`), watch (:meth:`RolloutContext.observe`), stop the old ones.
Any step may raise; :meth:`Strategy.rollback` then restores the stable version from what it
observes (which old instances still run) rather than from what the strategy believed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crackseg.utils.deployment.errors import DeploymentError, GateFailedError
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.models import DeploymentMetadata, DeploymentState, HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker, failure
from crackseg.utils.deployment.redact import redact_url
from crackseg.utils.deployment.rollout.analysis import PerformanceMonitor
from crackseg.utils.deployment.rollout.config import DeploymentConfig
from crackseg.utils.deployment.rollout.gate import GateResult, Verdict, judge_analysis, judge_probes
from crackseg.utils.deployment.rollout.launchers import Launcher, base_url, describe, health_url
from crackseg.utils.deployment.rollout.routers.base import Backend, TrafficRouter
from crackseg.utils.deployment.rollout.targets.base import Instance

__all__ = [
    "PROBES_ONLY",
    "DeploymentAborted",
    "ProgressFn",
    "Release",
    "RolloutContext",
    "Strategy",
    "replica_kwargs",
    "restore_stable",
]


logger = logging.getLogger("crackseg.utils.deployment.orchestration")

PROBES_ONLY = "judged on health probes only"
ProgressFn = Callable[[str, float, float], None]


class DeploymentAborted(DeploymentError):
    """The deployment was aborted (by :meth:`DeploymentOrchestrator.abort` or a timeout)."""


@dataclass
class Release:
    """A version serving (or having served) an environment, and how to restart it."""

    deployment_id: str
    version: str
    config: DeploymentConfig
    launcher: Launcher
    instances: list[Instance]
    slot: str = ""
    replicas: int = 0  # how many instances it should have (default: as many as it started with)

    def __post_init__(self) -> None:
        self.replicas = self.replicas or len(self.instances)


@dataclass
class RolloutContext:
    """Everything a strategy touches during one deployment. Not thread-safe except
    :attr:`abort_event`, which another thread may set."""

    config: DeploymentConfig
    metadata: DeploymentMetadata
    launcher: Launcher
    router: TrafficRouter
    checker: HealthChecker
    store: HistoryStore
    stable: Release | None
    abort_event: threading.Event = field(default_factory=threading.Event)
    on_change: Callable[[], None] = lambda: None
    on_progress: ProgressFn | None = None  # (window label, elapsed, total seconds)
    new_instances: list[Instance] = field(default_factory=list)
    slot: str = ""
    rolling_back: bool = False

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.config.deploy_timeout
        self.stable_count = self.stable.replicas if self.stable else 0

    # -- bookkeeping ----------------------------------------------------------------
    def set_state(self, state: DeploymentState, reason: str | None = None) -> None:
        self.metadata.set_state(state, reason)
        logger.info(
            "%s: %s%s", self.metadata.deployment_id, state.value, f" ({reason})" * bool(reason)
        )
        self.on_change()

    def note(self, kind: str, **facts: Any) -> None:
        """Record a step (gate verdicts, traffic changes) in ``metadata.extra['steps']``."""
        self.metadata.extra.setdefault("steps", []).append(
            {"step": kind, "at": time.time(), **facts}
        )
        self.on_change()

    def check_abort(self) -> None:
        if self.rolling_back:
            return
        if self.abort_event.is_set():
            raise DeploymentAborted("aborted on request")
        if time.monotonic() > self.deadline:
            raise DeploymentAborted(f"deploy_timeout of {self.config.deploy_timeout}s exceeded")

    def wait(self, seconds: float) -> None:
        """Sleep, waking at once on abort."""
        if seconds <= 0:
            return
        if self.rolling_back:
            time.sleep(seconds)
        elif self.abort_event.wait(min(seconds, max(0.0, self.deadline - time.monotonic()))):
            self.check_abort()

    # -- instances ------------------------------------------------------------------
    def launch(self, environment: str, **slot: Any) -> Instance:
        self.check_abort()
        inst = self.launcher.start(self.config, environment=environment, **slot)
        self.new_instances.append(inst)
        self.metadata.extra.setdefault("instances", []).append(describe(inst))
        if self.metadata.deployment_url is None:
            # Records are exported and alerted: no credentials in them.
            self.metadata.deployment_url = redact_url(base_url(inst))
            self.metadata.health_check_url = redact_url(health_url(inst))
        self.on_change()
        return inst

    def stop(self, instances: list[Instance], launcher: Launcher | None = None) -> None:
        for inst in instances:
            (launcher or self.launcher).stop(inst, self.config.grace_period)

    def retire(self, instances: list[Instance]) -> None:
        """Stop old (stable) instances for good; the stable release forgets them."""
        if self.stable is None:
            return
        for inst in instances:
            self.stable.instances = [i for i in self.stable.instances if i is not inst]
            self.stable.launcher.stop(inst, self.config.grace_period)
        self.on_change()

    def stable_alive(self) -> list[Instance]:
        if self.stable is None:
            return []
        return [i for i in self.stable.instances if self.stable.launcher.is_alive(i)]

    # -- traffic --------------------------------------------------------------------
    def route(
        self, weighted: list[tuple[Instance, int]], backups: list[Instance] | None = None
    ) -> None:
        """Send traffic by weight; instances with weight 0 are left out. ``backups`` (the
        previous version, kept warm) get requests only when the others fail them, where the
        router supports it."""
        backends = [Backend(i.address, w, i.version) for i, w in weighted if w > 0]
        if not backends:
            raise DeploymentError("no backend left to route traffic to")
        if backups and self.router.supports_backup:
            primary = {b.address for b in backends}
            backends += [
                Backend(i.address, 1, i.version, backup=True)
                for i in backups
                if i.address not in primary
            ]
        if sorted(self.router.current(), key=_key) == sorted(backends, key=_key):
            return  # already in force: a reload would only churn connections
        self.router.apply(backends)
        routes = [f"{b.label}@{b.address}={'backup' if b.backup else b.weight}" for b in backends]
        logger.info("%s: traffic %s", self.metadata.deployment_id, ", ".join(routes))
        self.note("route", backends=routes)

    # -- gates ----------------------------------------------------------------------
    def probe(self, inst: Instance, launcher: Launcher | None = None) -> HealthCheckResult:
        if not (launcher or self.launcher).is_alive(inst):
            result = failure("process is not running", 0.0, process_running=False)
        else:
            timeout = max(1, math.ceil(self.config.probe_timeout))
            result = self.checker.check_health(health_url(inst), timeout=timeout)
        self.store.add_health(self.metadata.deployment_id, result)
        return result

    def wait_healthy(
        self, instances: list[Instance], launcher: Launcher | None = None
    ) -> GateResult:
        """Health gate: each instance healthy ``success_threshold`` times in a row within
        ``health_timeout``; a dead process or ``failure_threshold`` failures after it was
        once healthy fail at once."""
        cfg = self.config
        end = time.monotonic() + cfg.health_timeout
        history: dict[str, list[HealthCheckResult]] = {i.instance_id: [] for i in instances}
        pending = list(instances)
        last = ""
        while True:
            self.check_abort()
            for inst in list(pending):
                r = self.probe(inst, launcher)
                h = history[inst.instance_id]
                h.append(r)
                if r.details.get("process_running") is False:
                    return self._gate(
                        "health", GateResult(Verdict.FAILED, f"{inst.instance_id}: process exited")
                    )
                g = judge_probes(
                    h,
                    success_threshold=cfg.success_threshold,
                    failure_threshold=cfg.failure_threshold,
                )
                if g.passed:
                    pending.remove(inst)
                elif g.failed and any(x.success for x in h):
                    return self._gate(
                        "health", GateResult(Verdict.FAILED, f"{inst.instance_id}: {g.reason}")
                    )
                last = f"{inst.instance_id}: {r.error_message or r.status}"
            if not pending:
                return self._gate(
                    "health", GateResult(Verdict.PASSED, f"{len(instances)} instance(s) healthy")
                )
            if time.monotonic() >= end:
                return self._gate(
                    "health",
                    GateResult(
                        Verdict.FAILED, f"not healthy within {cfg.health_timeout}s ({last})"
                    ),
                )
            self.wait(cfg.check_interval)

    def perf_monitor(self, instances: list[Instance]) -> PerformanceMonitor:
        cfg = self.config
        path = cfg.metrics_path
        urls = [base_url(i) + path for i in instances] if path else []
        if cfg.prometheus_url and instances:
            # A PromQL string literal: the regex's "\." is written "\\.".
            regex = "|".join(i.address.replace(".", "\\\\.") for i in instances)
            queries = {
                k: q.replace("{instances}", regex).replace("{version}", instances[0].version)
                for k, q in cfg.prometheus_queries.items()
            }
            return PerformanceMonitor(
                urls,
                prometheus_url=cfg.prometheus_url,
                queries=queries,
                label_filter=cfg.metrics_labels,
                timeout=cfg.probe_timeout,
            )
        addresses = [i.address for i in instances]
        router = self.router
        return PerformanceMonitor(
            urls,
            label_filter=self.config.metrics_labels,
            timeout=self.config.probe_timeout,
            traffic=(lambda since: router.measure(addresses, since))
            if router.measures_traffic
            else None,
        )

    def observe(
        self, new: list[Instance], stable: list[Instance], seconds: float, label: str
    ) -> GateResult:
        """Watch ``new`` serving traffic for ``seconds``: health probes and traffic analysis
        against ``stable``, re-judged at every probe; a failure returns at once, and so do
        ``consecutive_error_limit`` measurement errors in a row. Not enough data at the end:
        wait up to ``analysis_timeout`` more."""
        cfg = self.config
        if seconds <= 0:
            return GateResult(Verdict.PASSED, "no bake window")
        pm_new = self.perf_monitor(new)
        measured = bool(cfg.metrics_path or cfg.prometheus_url or self.router.measures_traffic)
        pm_stable = self.perf_monitor(stable) if stable and measured else None
        history: dict[str, list[HealthCheckResult]] = {i.instance_id: [] for i in new}
        start = time.monotonic()
        end, hard_end = start + seconds, start + seconds + cfg.effective_analysis_timeout
        errors_in_row, logged = 0, start
        while True:
            self.check_abort()
            for inst in new:
                r = self.probe(inst)
                pm_new.record_probe(r)
                h = history[inst.instance_id]
                h.append(r)
                if r.details.get("process_running") is False:
                    return self._gate(
                        label, GateResult(Verdict.FAILED, f"{inst.instance_id}: process exited")
                    )
                g = judge_probes(h, success_threshold=1, failure_threshold=cfg.failure_threshold)
                if g.failed:
                    return self._gate(
                        label, GateResult(Verdict.FAILED, f"{inst.instance_id}: {g.reason}")
                    )
            pm_new.scrape()
            if pm_stable is not None:
                pm_stable.scrape()
            snap_stable = pm_stable.snapshot(min_samples=cfg.min_samples) if pm_stable else None
            g = judge_analysis(
                pm_new.snapshot(min_samples=cfg.min_samples), snap_stable, cfg.criteria
            )
            now = time.monotonic()
            if g.verdict is Verdict.ERROR:
                errors_in_row += 1
                logger.warning(
                    "%s: %s: error %d: %s",
                    self.metadata.deployment_id,
                    label,
                    errors_in_row,
                    g.reason,
                )
                if errors_in_row >= cfg.consecutive_error_limit:
                    reason = f"{errors_in_row} measurement errors in a row: {g.reason}"
                    return self._gate(label, GateResult(Verdict.ERROR, reason, g.details))
            else:
                errors_in_row = 0
            if self.on_progress is not None:
                self.on_progress(label, min(now - start, seconds), seconds)
            if now - logged >= max(5.0, seconds / 5):
                logged = now
                logger.info(
                    "%s: %s %.0f/%.0f s: %s %s",
                    self.metadata.deployment_id,
                    label,
                    now - start,
                    seconds,
                    g.verdict.value,
                    g.reason,
                )
            if g.failed or (now >= end and (g.passed or now >= hard_end)):
                return self._gate(label, g)
            self.wait(cfg.check_interval)

    def _gate(self, label: str, g: GateResult) -> GateResult:
        new = g.details.get("new") or {}
        source, note = new.get("source"), new.get("note")
        logger.info(
            "%s: %s gate %s: %s", self.metadata.deployment_id, label, g.verdict.value, g.reason
        )
        self.note("gate", gate=label, verdict=g.verdict.value, reason=g.reason, source=source)
        if source is not None and g.verdict is Verdict.PASSED:
            self.metadata.extra.setdefault("judged_on", []).append(
                {"gate": label, "source": source, "note": note}
            )
        return g

    def require(self, g: GateResult, label: str) -> None:
        """Go on after a gate, or raise :class:`GateFailedError`. A measurement ``error``
        always stops; ``inconclusive`` goes on or stops as ``on_inconclusive`` says."""
        if g.passed:
            return
        if g.verdict is Verdict.INCONCLUSIVE and self.config.on_inconclusive == "proceed":
            self.note("proceed", gate=label, reason=f"{g.verdict.value}: {g.reason}")
            return
        raise GateFailedError(f"{label} gate {g.verdict.value}: {g.reason}")

    def probes_only(self) -> str | None:
        """Why the traffic gates passed without measuring real traffic, if any did."""
        notes = [j["note"] for j in self.metadata.extra.get("judged_on", []) if j.get("note")]
        return notes[-1] if notes else None


def _key(b: Backend) -> tuple[str, int, bool]:
    return (b.address, b.weight, b.backup)


def replica_kwargs(index: int, total: int) -> dict[str, int]:
    """The rolling keywords, only when there is more than one replica."""
    return {"replica_index": index, "total_replicas": total} if total > 1 else {}


class Strategy(ABC):
    """One way to replace the stable version. ``run`` returns the instances now serving;
    on any exception the orchestrator calls ``rollback``."""

    name: str = ""

    @abstractmethod
    def run(self, ctx: RolloutContext) -> list[Instance]: ...

    def rollback(self, ctx: RolloutContext) -> bool:
        """Undo this strategy's steps; the default, :func:`restore_stable`, fits them all."""
        return restore_stable(ctx)


def restore_stable(ctx: RolloutContext) -> bool:
    """Put all traffic back on the stable version and stop the new one.

    Works from observed state: stable instances that no longer run or fail a probe
    (retired by a rolling or recreate step, stopped after ``keep_old_seconds``, dead) are
    started again from the stable release and gated first. Returns True when the stable
    version serves again (or there was none and the new one is stopped). When the stable
    version cannot be restored, a new version that already serves is left serving.
    """
    ctx.rolling_back = True
    stable = ctx.stable
    if stable is None or not ctx.stable_count:
        ctx.stop(ctx.new_instances)
        return True
    try:
        alive = []
        for inst in ctx.stable_alive():
            if ctx.probe(inst, stable.launcher).success:
                alive.append(inst)
            else:
                stable.launcher.stop(inst, ctx.config.grace_period)
        restarted: list[Instance] = []
        for n in range(ctx.stable_count - len(alive)):
            extra = replica_kwargs(n, ctx.stable_count)
            restarted.append(stable.launcher.start(stable.config, environment=stable.slot, **extra))
        if restarted and not ctx.wait_healthy(restarted, stable.launcher).passed:
            ctx.stop(restarted, stable.launcher)
            restarted = []
        serving = alive + restarted
        if serving:
            ctx.route([(i, 1) for i in serving])
            stable.instances = serving
    except Exception as exc:
        ctx.note("rollback_error", error=f"{type(exc).__name__}: {exc}")
        serving = []
    if not serving:
        routed = {b.address for b in ctx.router.current()}
        keep = [i for i in ctx.new_instances if i.address in routed]
        ctx.note("rollback_incomplete", kept_serving=[i.address for i in keep])
        ctx.stop([i for i in ctx.new_instances if i not in keep])
        return False
    if len(serving) < ctx.stable_count:
        ctx.note("rollback_degraded", serving=len(serving), wanted=ctx.stable_count)
    ctx.stop(ctx.new_instances)
    return True
