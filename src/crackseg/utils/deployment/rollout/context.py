"""One deployment's working state: its release, its record, and the actions a strategy takes.

A strategy is an ordered list of steps over observed state: start instances
(:meth:`RolloutContext.launch`), gate them (:func:`~.watch.wait_healthy`), move traffic
(:meth:`RolloutContext.route`), watch (:func:`~.watch.observe`), stop the old ones. The
context holds what those steps share; the judging loops live in :mod:`.watch` and the way
back in :mod:`.rollback`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crackseg.utils.deployment.errors import DeploymentError, GateFailedError
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.models import DeploymentMetadata, DeploymentState, HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker, failure
from crackseg.utils.deployment.redact import redact_url
from crackseg.utils.deployment.rollout.config import DeploymentConfig
from crackseg.utils.deployment.rollout.gate import GateResult, Verdict
from crackseg.utils.deployment.rollout.judging import Judging
from crackseg.utils.deployment.rollout.launchers import Launcher, base_url, describe, health_url
from crackseg.utils.deployment.rollout.routers.base import Backend, TrafficRouter
from crackseg.utils.deployment.rollout.targets.base import Instance

__all__ = [
    "DeploymentAborted",
    "ProgressFn",
    "Release",
    "RolloutContext",
    "replica_kwargs",
]


logger = logging.getLogger("crackseg.utils.deployment.orchestration")

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
    switched_at: float | None = None  # Unix time traffic first reached the new version
    judging: Judging | None = None  # the sequential judge, from the first analysed window on

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
        new = {i.address for i in self.new_instances}
        if self.switched_at is None and any(b.address in new for b in backends):
            self.switched_at = time.time()
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

    def record_gate(self, label: str, g: GateResult) -> GateResult:
        """Log and note a gate's verdict with its evidence (and, for a pass, what it was
        judged on); returns it."""
        new = g.details.get("new") or {}
        source, note = new.get("source"), new.get("note")
        logger.info(
            "%s: %s gate %s: %s", self.metadata.deployment_id, label, g.verdict.value, g.reason
        )
        evidence = g.details.get("evidence")
        self.metadata.extra.pop("live_evidence", None)
        facts: dict[str, Any] = {}
        if evidence is not None:
            # The note holds the judge's Evidence as the page reads it, and beside it the
            # judge's own verdict and code, the baseline and this window's counts.
            facts = {
                "evidence": evidence.get("evidence"),
                "judge_verdict": evidence.get("verdict"),
                "judge_code": evidence.get("code"),
                "alpha": evidence.get("alpha"),
                "baseline": evidence.get("baseline"),
                "window": evidence.get("window"),
            }
        self.note(
            "gate", gate=label, verdict=g.verdict.value, reason=g.reason, source=source, **facts
        )
        if evidence is not None:
            # The latest verdict's evidence, where the API, the CLI and the events read it.
            # The gate's verdict and reason win over the judge's own (a window no user
            # reached passes on probes; a plainly broken version fails; a timeout fails closed).
            self.metadata.extra["evidence"] = {
                **evidence,
                "judge_verdict": evidence.get("verdict"),
                "gate": label,
                "verdict": g.verdict.value,
                "reason": g.reason,
            }
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
