"""The judging loops of a rollout: the health gate of new instances and the watch of a
version serving traffic.

Both are re-judged at every probe and return a :class:`~.gate.GateResult` recorded on the
context (:meth:`~.context.RolloutContext.record_gate`); the strategy decides what to do
with it (:meth:`~.context.RolloutContext.require`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from crackseg.utils.deployment.errors import RouterError
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.rollout.analysis import PROBES_ONLY, PerformanceMonitor
from crackseg.utils.deployment.rollout.arms import Baseline
from crackseg.utils.deployment.rollout.context import RolloutContext
from crackseg.utils.deployment.rollout.counters import (
    CounterReader,
    IncreaseReader,
    MeasurementError,
)
from crackseg.utils.deployment.rollout.gate import GateResult, Verdict, judge_analysis, judge_probes
from crackseg.utils.deployment.rollout.judge import ArmCounts, ReasonCode
from crackseg.utils.deployment.rollout.judging import Judging, summarize
from crackseg.utils.deployment.rollout.launchers import Launcher, base_url
from crackseg.utils.deployment.rollout.load import LoadGenerator
from crackseg.utils.deployment.rollout.prom_counters import PrometheusCounterReader
from crackseg.utils.deployment.rollout.targets.base import Instance

__all__ = ["LOOK_NOTE_SECONDS", "observe", "perf_monitor", "wait_healthy"]

# How often a judged window notes its evidence in the record (each look is judged).
LOOK_NOTE_SECONDS = 5.0

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
                expected_version=cfg.version if cfg.require_version else None,
            )
            if g.passed:
                pending.remove(inst)
            elif g.failed and any(x.success for x in h):
                return ctx.record_gate(
                    "health", GateResult(Verdict.FAILED, f"{inst.instance_id}: {g.reason}")
                )
            last = f"{inst.instance_id}: {g.reason if r.success else r.error_message or r.status}"
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
    """Watch ``new`` serving traffic for ``seconds``: health probes at every look, and the
    traffic judged against ``stable`` (serving beside it; none: against the stable's figures
    from before the switch). A dead process or ``failure_threshold`` failed probes fail at
    once; so do ``consecutive_error_limit`` measurement errors in a row (an ``error``).

    Where a Prometheus server gives the instances' counters (``prometheus_queries``
    ``requests`` and ``errors``, :mod:`~.prom_counters`), or else the router logs every
    request (nginx), or else the instances expose their counters (``metrics_path``,
    :mod:`~.counters`), the sequential judge decides
    (:class:`~.judging.Judging`): evidence of harm fails at once, a version failing every
    request too; the window passes at its end only on evidence of safety; a window no user
    request reached is judged on its health probes and says so; otherwise it keeps gathering
    up to ``analysis_timeout`` more and then ends ``inconclusive`` (fail closed, saying what
    evidence was missing and how many more requests it needed). ``load`` runs meanwhile.
    Elsewhere (a Prometheus server asked for rates, no measurement) the snapshot gate
    (:func:`~.gate.judge_analysis`) judges, as before: rates, percentages and quantiles are
    no counts per arm per look, so the sequential test cannot be fed from them; the record
    says so and how to switch (a ``judge`` step).
    """
    cfg = ctx.config
    if seconds <= 0:
        return GateResult(Verdict.PASSED, "no bake window")
    looks: _Looks
    # Prometheus when asked for (it was configured for this); then the router's log: it
    # sees timeouts and tells the synthetic load apart, which the instances' counters cannot.
    if cfg.counts_from_prometheus or (
        not cfg.prometheus_url and (ctx.router.logs_requests or cfg.metrics_path)
    ):
        looks = _JudgedLooks(ctx, new, stable, seconds + cfg.effective_analysis_timeout, label)
    else:
        looks = _SnapshotLooks(ctx, new, stable)
    try:
        return _watch(ctx, new, seconds, label, looks)
    finally:
        looks.close()


class _Looks:
    """One way of judging the traffic of a window, a look at a time."""

    def record_probe(self, r: HealthCheckResult) -> None:
        """A health probe of the new version (some judges count them)."""

    def look(self) -> GateResult:
        raise NotImplementedError

    def at_end(self, g: GateResult, probes: int) -> GateResult:
        """The verdict once the window is over (an inconclusive one may still pass)."""
        return g

    def close(self) -> None:
        """Stop what the looks started."""


_NO_COUNTS = (
    "sequential judge not used: the Prometheus queries give rates and quantiles, not request "
    "and error counts per arm per look; fixed-threshold snapshot gate. To be judged "
    "sequentially, give prometheus_queries requests and errors instead: the cumulative "
    'counters of one instance, e.g. sum(http_requests_total{instance="{instance}"})'
)


class _SnapshotLooks(_Looks):
    """The snapshot gate over metrics, Prometheus, the router's summary or the probes."""

    def __init__(self, ctx: RolloutContext, new: list[Instance], stable: list[Instance]) -> None:
        cfg = self.cfg = ctx.config
        self.pm_new = perf_monitor(ctx, new)
        measured = bool(cfg.metrics_path or cfg.prometheus_url or ctx.router.measures_traffic)
        self.pm_stable = perf_monitor(ctx, stable) if stable and measured else None
        if cfg.prometheus_url:
            # In the record, so a reader knows this verdict is not the sequential judge's.
            ctx.note("judge", source="prometheus", reason=_NO_COUNTS)

    def record_probe(self, r: HealthCheckResult) -> None:
        self.pm_new.record_probe(r)

    def look(self) -> GateResult:
        self.pm_new.scrape()
        if self.pm_stable is not None:
            self.pm_stable.scrape()
        n = self.cfg.min_samples
        snap_stable = self.pm_stable.snapshot(min_samples=n) if self.pm_stable else None
        return judge_analysis(self.pm_new.snapshot(min_samples=n), snap_stable, self.cfg.criteria)

    def at_end(self, g: GateResult, probes: int) -> GateResult:
        # Where no user request reached the new version (or nothing measures real traffic),
        # nobody was at risk and waiting brings no evidence: the probes decide.
        new = g.details.get("new") or {}
        if g.verdict is not Verdict.INCONCLUSIVE or new.get("source") != "probes":
            return g
        reason = f"{new.get('requests') or 0} health probes, none failing; {new.get('note')}"
        return GateResult(Verdict.PASSED, reason, g.details)


class _JudgedLooks(_Looks):
    """The sequential judge over the router's log, with the rollout's synthetic load."""

    def __init__(
        self,
        ctx: RolloutContext,
        new: list[Instance],
        stable: list[Instance],
        seconds: float,
        label: str,
    ) -> None:
        cfg = ctx.config
        self.label = label
        self._noted = time.monotonic()
        self.ctx = ctx
        self.error: str | None = None
        previous = list(ctx.stable.instances) if ctx.stable else []
        if ctx.judging is None:
            addresses = [i.address for i in previous]
            reader = _counter_reader(ctx)
            if reader is not None:
                _register(ctx, reader, previous)
                try:
                    ctx.judging = Judging.for_counters(reader, addresses, cfg.judge_config)
                except MeasurementError as exc:
                    # No baseline: every look of this window is a failed measurement.
                    self.error = f"stable counters unreadable: {exc}"
                    ctx.judging = Judging(
                        None, _empty(), time.time(), cfg.judge_config, reader=reader
                    )
            else:
                since = ctx.switched_at if ctx.switched_at is not None else time.time()
                ctx.judging = Judging.for_rollout(ctx.router, addresses, since, cfg.judge_config)
        self.judging = ctx.judging
        if isinstance(self.judging.reader, IncreaseReader):
            _register(ctx, self.judging.reader, new + stable)
        self.judging.start_window([i.address for i in new], [i.address for i in stable])
        self.load: LoadGenerator | None = None
        if cfg.load is not None and ctx.router.public_url:
            # The router's load header (its token) is what logs these requests apart.
            marker = ctx.router.load_header
            headers = {**cfg.load.headers, **({marker[0]: marker[1]} if marker else {})}
            duration = min(cfg.load.duration, seconds)
            spec = replace(cfg.load, duration=duration, headers=headers)
            self.load = LoadGenerator(ctx.router.public_url, spec)
            self.load.start()

    def look(self) -> GateResult:
        if self.error is not None:
            return GateResult(Verdict.ERROR, f"measurement failed: {self.error}", self._details())
        try:
            j = self.judging.look()
        except (RouterError, MeasurementError) as exc:
            return GateResult(Verdict.ERROR, f"measurement failed: {exc}", self._details())
        broken = self.judging.broken()
        if broken is not None:
            return GateResult(Verdict.FAILED, f"plainly broken: {broken}", self._details())
        details = self._details()
        # Shown live beside the progress bars (read by the CLI; saved with the next change).
        self.ctx.metadata.extra["live_evidence"] = {
            "label": self.label,
            "text": summarize(details["evidence"]),
        }
        now = time.monotonic()
        if now - self._noted >= LOOK_NOTE_SECONDS:
            # The evidence as it accumulates, in the record: bounded, one brief note a while.
            self._noted = now
            self.ctx.note("look", gate=self.label, **self.judging.look_note())
        return GateResult(Verdict(j.verdict.value), j.reason, details)

    def at_end(self, g: GateResult, probes: int) -> GateResult:
        j = self.judging.last
        if g.verdict is not Verdict.INCONCLUSIVE or j.code is not ReasonCode.NO_TRAFFIC:
            return g
        note = f"{PROBES_ONLY} (no user request reached the new version in this window)"
        reason = f"{probes} health probes, none failing; {note}"
        return GateResult(Verdict.PASSED, reason, self._details(note))

    def close(self) -> None:
        if self.load is not None:
            spec, result = self.load.spec, self.load.stop()
            # Header values stay out of the record: they may hold credentials.
            sent = {"window": self.label, "path": spec.path, "rate": spec.rate}
            self.ctx.metadata.extra.setdefault("load", []).append(sent | result.to_dict())

    def _details(self, note: str | None = None) -> dict[str, Any]:
        source = "probes" if note else self.judging.reader.source
        return {"new": {"source": source, "note": note}, "evidence": self.judging.view()}


def _counter_reader(ctx: RolloutContext) -> IncreaseReader | None:
    """Where the looks' counters are read: Prometheus, the instances' own metrics (where
    the router logs no request), or None (the router's log)."""
    cfg = ctx.config
    if cfg.counts_from_prometheus:
        assert cfg.prometheus_url is not None
        return PrometheusCounterReader(
            cfg.prometheus_url,
            cfg.prometheus_queries,
            scrape_interval=cfg.prometheus_scrape_interval,
            timeout=cfg.probe_timeout,
        )
    if ctx.router.logs_requests:
        return None
    return CounterReader({}, label_filter=cfg.metrics_labels, timeout=cfg.probe_timeout)


def _register(ctx: RolloutContext, reader: IncreaseReader, instances: list[Instance]) -> None:
    if isinstance(reader, PrometheusCounterReader):
        reader.register({i.address: i.version for i in instances})
    elif isinstance(reader, CounterReader):
        path = ctx.config.metrics_path or ""
        reader.register({i.address: base_url(i) + path for i in instances})


def _empty() -> Baseline:
    return Baseline((), ArmCounts(0), 0.0, "stable counters unreadable")


def _watch(
    ctx: RolloutContext, new: list[Instance], seconds: float, label: str, looks: _Looks
) -> GateResult:
    cfg = ctx.config
    history: dict[str, list[HealthCheckResult]] = {i.instance_id: [] for i in new}
    start = time.monotonic()
    end, hard_end = start + seconds, start + seconds + cfg.effective_analysis_timeout
    errors_in_row, logged = 0, start
    while True:
        ctx.check_abort()
        for inst in new:
            r = ctx.probe(inst)
            looks.record_probe(r)
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
        g = looks.look()
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
        if now >= end:
            g = looks.at_end(g, sum(len(h) for h in history.values()))
        if g.failed or (now >= end and (g.passed or now >= hard_end)):
            if g.verdict is Verdict.INCONCLUSIVE:
                g = GateResult(
                    g.verdict, f"no decision within the analysis time: {g.reason}", g.details
                )
            return ctx.record_gate(label, g)
        ctx.wait(cfg.check_interval)
