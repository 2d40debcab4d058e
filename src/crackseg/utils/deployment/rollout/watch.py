"""The judging loops of a rollout: the health gate of new instances and the watch of a
version serving traffic.

Both are re-judged at every probe and return a :class:`~.gate.GateResult` recorded on the
context (:meth:`~.context.RolloutContext.record_gate`); the strategy decides what to do
with it (:meth:`~.context.RolloutContext.require`).
"""

from __future__ import annotations

import logging
import time

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.rollout.analysis import PerformanceMonitor
from crackseg.utils.deployment.rollout.context import RolloutContext
from crackseg.utils.deployment.rollout.gate import GateResult, Verdict, judge_analysis, judge_probes
from crackseg.utils.deployment.rollout.launchers import Launcher, base_url
from crackseg.utils.deployment.rollout.targets.base import Instance

__all__ = ["observe", "perf_monitor", "wait_healthy"]

logger = logging.getLogger("crackseg.utils.deployment.orchestration")


def wait_healthy(
    ctx: RolloutContext, instances: list[Instance], launcher: Launcher | None = None
) -> GateResult:
    """Health gate: each instance healthy ``success_threshold`` times in a row within
    ``health_timeout``; a dead process or ``failure_threshold`` failures after it was
    once healthy fail at once."""
    cfg = ctx.config
    end = time.monotonic() + cfg.health_timeout
    history: dict[str, list[HealthCheckResult]] = {i.instance_id: [] for i in instances}
    pending = list(instances)
    last = ""
    while True:
        ctx.check_abort()
        for inst in list(pending):
            r = ctx.probe(inst, launcher)
            h = history[inst.instance_id]
            h.append(r)
            if r.details.get("process_running") is False:
                return ctx.record_gate(
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
                return ctx.record_gate(
                    "health", GateResult(Verdict.FAILED, f"{inst.instance_id}: {g.reason}")
                )
            last = f"{inst.instance_id}: {r.error_message or r.status}"
        if not pending:
            return ctx.record_gate(
                "health", GateResult(Verdict.PASSED, f"{len(instances)} instance(s) healthy")
            )
        if time.monotonic() >= end:
            return ctx.record_gate(
                "health",
                GateResult(Verdict.FAILED, f"not healthy within {cfg.health_timeout}s ({last})"),
            )
        ctx.wait(cfg.check_interval)


def perf_monitor(ctx: RolloutContext, instances: list[Instance]) -> PerformanceMonitor:
    cfg = ctx.config
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
    router = ctx.router
    return PerformanceMonitor(
        urls,
        label_filter=ctx.config.metrics_labels,
        timeout=ctx.config.probe_timeout,
        traffic=(lambda since: router.measure(addresses, since))
        if router.measures_traffic
        else None,
    )


def observe(
    ctx: RolloutContext, new: list[Instance], stable: list[Instance], seconds: float, label: str
) -> GateResult:
    """Watch ``new`` serving traffic for ``seconds``: health probes and traffic analysis
    against ``stable``, re-judged at every probe; a failure returns at once, and so do
    ``consecutive_error_limit`` measurement errors in a row. Not enough data at the end:
    wait up to ``analysis_timeout`` more."""
    cfg = ctx.config
    if seconds <= 0:
        return GateResult(Verdict.PASSED, "no bake window")
    pm_new = perf_monitor(ctx, new)
    measured = bool(cfg.metrics_path or cfg.prometheus_url or ctx.router.measures_traffic)
    pm_stable = perf_monitor(ctx, stable) if stable and measured else None
    history: dict[str, list[HealthCheckResult]] = {i.instance_id: [] for i in new}
    start = time.monotonic()
    end, hard_end = start + seconds, start + seconds + cfg.effective_analysis_timeout
    errors_in_row, logged = 0, start
    while True:
        ctx.check_abort()
        for inst in new:
            r = ctx.probe(inst)
            pm_new.record_probe(r)
            h = history[inst.instance_id]
            h.append(r)
            if r.details.get("process_running") is False:
                return ctx.record_gate(
                    label, GateResult(Verdict.FAILED, f"{inst.instance_id}: process exited")
                )
            g = judge_probes(h, success_threshold=1, failure_threshold=cfg.failure_threshold)
            if g.failed:
                return ctx.record_gate(
                    label, GateResult(Verdict.FAILED, f"{inst.instance_id}: {g.reason}")
                )
        pm_new.scrape()
        if pm_stable is not None:
            pm_stable.scrape()
        snap_stable = pm_stable.snapshot(min_samples=cfg.min_samples) if pm_stable else None
        g = judge_analysis(pm_new.snapshot(min_samples=cfg.min_samples), snap_stable, cfg.criteria)
        now = time.monotonic()
        if g.verdict is Verdict.ERROR:
            errors_in_row += 1
            logger.warning(
                "%s: %s: error %d: %s",
                ctx.metadata.deployment_id,
                label,
                errors_in_row,
                g.reason,
            )
            if errors_in_row >= cfg.consecutive_error_limit:
                reason = f"{errors_in_row} measurement errors in a row: {g.reason}"
                return ctx.record_gate(label, GateResult(Verdict.ERROR, reason, g.details))
        else:
            errors_in_row = 0
        if ctx.on_progress is not None:
            ctx.on_progress(label, min(now - start, seconds), seconds)
        if now - logged >= max(5.0, seconds / 5):
            logged = now
            logger.info(
                "%s: %s %.0f/%.0f s: %s %s",
                ctx.metadata.deployment_id,
                label,
                now - start,
                seconds,
                g.verdict.value,
                g.reason,
            )
        if now >= end and g.verdict is Verdict.INCONCLUSIVE:
            g = _probes_decide(g)
        if g.failed or (now >= end and (g.passed or now >= hard_end)):
            return ctx.record_gate(label, g)
        ctx.wait(cfg.check_interval)


def _probes_decide(g: GateResult) -> GateResult:
    """Where no user request reached the new version (or nothing measures real traffic),
    nobody was at risk and waiting brings no evidence: the health probes decide, and a
    window whose probes never failed passes, saying so. Failing closed is for windows where
    users were served and the evidence stayed short."""
    new = g.details.get("new") or {}
    if new.get("source") != "probes":
        return g
    return GateResult(
        Verdict.PASSED,
        f"{new.get('requests') or 0} health probes, none failing; {new.get('note')}",
        g.details,
    )
