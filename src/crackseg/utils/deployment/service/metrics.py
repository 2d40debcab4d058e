"""Prometheus metrics and uptime windows over a running :class:`DeploymentHealthMonitor`.

:func:`build_registry` gives a private :class:`CollectorRegistry` (never the global one, so
several monitors in one process never collide) whose collector reads the monitor's latest
statuses at scrape time, plus a response-time histogram fed by a result listener.

:class:`UptimeTracker` answers "what share of checks were up over the last 24 h / 7 d" in
constant time per deployment: hourly buckets filled once from the store's history (in the
background), then fed every new result through the monitor's result listener.

Every series also carries ``monitor_instance`` (which monitor wrote it: two monitors of a
pair scraped by one job with ``honor_labels: true`` would otherwise write one series
between them). Names follow Prometheus' guide (``promtool check metrics`` is clean): base
units, ratios 0-1, ``_total`` counters where a rate is wanted; CHANGELOG.md maps old names.

Series (label ``deployment_id`` unless noted): ``crackseg_deployment_status{status}``,
``crackseg_probe_response_time_seconds`` (histogram),
``crackseg_probe_last_check_timestamp_seconds``, ``crackseg_consecutive_failures``,
``crackseg_error_rate_ratio``, ``crackseg_degraded_ratio``, ``crackseg_deployment_checks_total``,
``crackseg_deployment_busy_checks_total`` (checks skipped while a blocking custom checker
still ran the previous one),
``crackseg_uptime_ratio{window="24h"|"7d"}``, ``crackseg_process_running``,
``crackseg_process_cpu_seconds_total``, ``crackseg_process_resident_memory_bytes`` (the
deployment's processes; absent without a ``process_name``: the machine is not a deployment),
``crackseg_alert_active{alert_type,severity}``; and without it: ``crackseg_build_info{version}``,
``crackseg_active_alerts``, ``crackseg_host_cpu_usage_ratio``,
``crackseg_host_memory_used_bytes``, ``crackseg_host_memory_usage_ratio``,
``crackseg_host_disk_usage_ratio``, ``crackseg_host_network_receive_bytes_total``,
``crackseg_host_network_transmit_bytes_total`` (the machine, once),
``crackseg_alert_notifications_total{handler,result="sent"|"failed"|"retried"|"dead_lettered"|"coalesced"|"dropped"}``,
``crackseg_alert_queue_depth{handler}``, ``crackseg_alert_dead_letters{handler}``,
``crackseg_alert_last_error_timestamp_seconds{handler}``,
``crackseg_alert_handler_info{handler,key,kind}``, ``crackseg_monitor_up``,
``crackseg_monitored_deployments``, ``crackseg_engine_checks_total``,
``crackseg_engine_checks_due_total``, ``crackseg_engine_checks_in_flight``,
``crackseg_engine_lateness_seconds`` (summary: quantiles 0.5 and 0.99 of the last 100,000
checks), ``crackseg_engine_overloaded``,
``crackseg_engine_loop_lag_seconds``, ``crackseg_engine_interval_stretch``,
``crackseg_engine_checks_discarded_total``, ``crackseg_engine_checks_skipped_busy_total``,
``crackseg_engine_checks_missed_total``, ``crackseg_engine_checks_cancelled_total`` (due =
started + skipped busy + missed), ``crackseg_rollout_evidence{environment,quantity}`` and
``crackseg_rollout_verdict_info{environment,verdict,code}`` (:mod:`.evidence_metrics`).
Also blackbox_exporter's ``probe_success``,
``probe_duration_seconds`` and ``probe_http_status_code`` (:mod:`.probe_metrics`), which
this module does not duplicate.

>>> # registry, tracker = build_registry(monitor)
>>> # prometheus_client.generate_latest(registry)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.uptime import UptimeTracker
from crackseg.utils.deployment.service.deployment_families import deployment_families
from crackseg.utils.deployment.service.deployment_families import number as _num
from crackseg.utils.deployment.service.evidence_metrics import RolloutEvidenceCollector
from crackseg.utils.deployment.service.exposition import LabelledRegistry
from crackseg.utils.deployment.service.probe_metrics import ProbeCollector
from crackseg.utils.deployment.service.resource_counters import (
    ProcessCpuSeconds,
    host_memory_total_bytes,
    host_network_bytes,
)
from crackseg.utils.deployment.service.text_family import ResponseHistogram
from crackseg.utils.deployment.version import VERSION

__all__ = [
    "RESPONSE_TIME_BUCKETS",
    "MonitorCollector",
    "MonitorLike",
    "UptimeTracker",
    "build_registry",
    "default_monitor_instance",
    "package_version",
]

#: Histogram buckets (seconds) for probe response times: 1 ms .. 30 s.
RESPONSE_TIME_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: The ``result`` label values of ``crackseg_alert_notifications_total``.
_DELIVERY_RESULTS = ("sent", "failed", "retried", "dead_lettered", "coalesced", "dropped")


def package_version() -> str:
    """This package's version (:data:`~..version.VERSION`, the one source: the wheel's
    metadata is read from it too), also when run from a source tree."""
    return VERSION


def default_monitor_instance(port: int) -> str:
    """``host:port`` of a monitor serving on ``port``: what tells the monitors of a pair
    apart when the configuration names none (``server.monitor_instance``)."""
    return f"{socket.gethostname()}:{port}"


class MonitorLike(Protocol):
    """The part of :class:`DeploymentHealthMonitor` the web face and metrics rely on."""

    @property
    def monitoring_active(self) -> bool: ...

    @property
    def monitored_deployments(self) -> dict[str, dict[str, Any]]: ...

    @property
    def store(self) -> Any: ...

    @property
    def dispatcher(self) -> Any: ...

    def get_all_deployment_statuses(self) -> dict[str, dict[str, Any]]: ...

    def engine_stats(self) -> dict[str, Any]: ...

    def add_result_listener(self, fn: Any) -> None: ...


class MonitorCollector(Collector):
    """Builds every metric family from the monitor's state at scrape time.

    Names use the ``crackseg_`` prefix and base units (seconds, bytes, ratios 0-1). The
    per-deployment families are :class:`~.text_family.TextFamily` rows (written straight
    to text by :func:`~.exposition.text_exposition`; 10,000 deployments are ~350,000
    samples).
    """

    def __init__(
        self,
        monitor: MonitorLike,
        uptime: UptimeTracker | None = None,
        probes: ProbeCollector | None = None,
    ) -> None:
        self._monitor = monitor
        self._uptime = uptime
        # Fed the statuses read for the scrape: one read of 10,000 deployments, not two.
        self._probes = probes
        self._cpu = ProcessCpuSeconds()
        self._version = package_version()
        # Not registered on its own: collect() yields it, after pruning removed deployments.
        self.histogram = ResponseHistogram(
            "crackseg_probe_response_time_seconds",
            "Response time of health checks",
            RESPONSE_TIME_BUCKETS,
        )

    def observe(self, deployment_id: str, result: HealthCheckResult) -> None:
        """Feed one check result (a monitor result listener; fast, thread-safe)."""
        self.histogram.observe(deployment_id, max(result.response_time_ms, 0.0) / 1000.0)
        if self._uptime is not None:
            self._uptime.observe(deployment_id, result)

    def _prune(self, live: dict[str, Any]) -> None:
        for dep_id in self.histogram.deployments():
            if dep_id not in live:
                self.histogram.remove(dep_id)
                if self._uptime is not None:
                    self._uptime.forget(dep_id)

    def collect(self) -> Iterator[Metric]:
        statuses = self._monitor.get_all_deployment_statuses()
        self._prune(statuses)
        self._cpu.prune(statuses)
        families, n_alerts = deployment_families(statuses, self._uptime, self._cpu.seconds)
        yield from families
        info = GaugeMetricFamily(
            "crackseg_build_info", "1, labelled with the monitor's version", labels=["version"]
        )
        info.add_metric([self._version], 1.0)
        yield info
        yield from self._host_families()
        yield self.histogram.family()
        yield GaugeMetricFamily(
            "crackseg_active_alerts", "Firing alerts over all deployments", value=n_alerts
        )
        yield from self._dispatcher_families()
        yield from self._engine_families(len(statuses))
        if self._probes is not None:
            yield from self._probes.families(statuses)

    def _host_families(self) -> Iterator[Metric]:
        sample = getattr(self._monitor, "host_metrics", None)
        host = sample() if callable(sample) else None
        if host is None:
            return
        used = host.memory_usage_mb * 2**20
        for name, doc, value in (
            ("cpu_usage_ratio", "Share of the machine's CPU time busy, 0-1",
             host.cpu_usage_percent / 100.0),
            ("memory_used_bytes", "Used memory of the machine", used),
            ("memory_usage_ratio", "Share of the machine's memory used, 0-1",
             used / host_memory_total_bytes()),
            ("disk_usage_ratio", "Share of the monitored file system used, 0-1",
             host.disk_usage_percent / 100.0),
        ):  # fmt: skip
            yield GaugeMetricFamily(f"crackseg_host_{name}", doc, value=value)
        # The kernel's counters themselves (not the monitor's rate): rate() over any window.
        net = host_network_bytes()
        if net is not None:
            for name, doc, value in (
                ("receive", "Bytes received on all interfaces of the machine", net[0]),
                ("transmit", "Bytes sent on all interfaces of the machine", net[1]),
            ):
                yield CounterMetricFamily(f"crackseg_host_network_{name}_bytes", doc, value=value)

    def _dispatcher_families(self) -> Iterator[Metric]:
        handler = ["handler"]
        notes = CounterMetricFamily(
            "crackseg_alert_notifications",
            "Alert delivery per handler: sent, dead_lettered, coalesced (cancelled out by a full"
            " queue) and dropped count notifications; failed and retried count tries",
            labels=["handler", "result"],
        )
        queued = GaugeMetricFamily(
            "crackseg_alert_queue_depth", "Notifications waiting per handler", labels=handler
        )
        dead = GaugeMetricFamily(
            "crackseg_alert_dead_letters",
            "Dead letters held per handler (re-queued by POST /api/v1/notifications/retry)",
            labels=handler,
        )
        last_error = GaugeMetricFamily(
            "crackseg_alert_last_error_timestamp_seconds",
            "When the handler's last failed try happened",
            labels=handler,
        )
        info = GaugeMetricFamily(
            "crackseg_alert_handler_info",
            "1 per alert handler: its key (outbox identity) and kind",
            labels=["handler", "key", "kind"],
        )
        dispatcher = getattr(self._monitor, "dispatcher", None)
        stats: dict[str, dict[str, Any]] = dispatcher.stats() if dispatcher is not None else {}
        for name, st in stats.items():
            for result in _DELIVERY_RESULTS:
                notes.add_metric([name, result], _num(st.get(result)) or 0.0)
            queued.add_metric([name], _num(st.get("queued")) or 0.0)
            dead.add_metric([name], _num(st.get("dead_letters")) or 0.0)
            at = _num(st.get("last_error_at"))
            if at is not None:
                last_error.add_metric([name], at)
            info.add_metric([name, str(st.get("key") or ""), str(st.get("kind") or "")], 1.0)
        yield from (notes, queued, dead, last_error, info)
        yield CounterMetricFamily(
            "crackseg_notifications_unrouted",
            "Notifications no handler's match accepted (handlers' match: blocks)",
            value=float(getattr(dispatcher, "unrouted", 0)),
        )

    def _engine_families(self, n_deployments: int) -> Iterator[Metric]:
        m = self._monitor
        try:
            stats = m.engine_stats()
        except Exception:
            stats = {}
        up = bool(m.monitoring_active) and bool(stats.get("running", m.monitoring_active))
        yield GaugeMetricFamily("crackseg_monitor_up", "1 while the check engine runs", value=up)
        yield GaugeMetricFamily(
            "crackseg_monitored_deployments", "Deployments monitored", value=n_deployments
        )
        done = _num(stats.get("checks_done"))
        if done is not None:
            yield CounterMetricFamily(
                "crackseg_engine_checks", "Checks completed by the engine", value=done
            )
        v = _num(stats.get("in_flight"))
        if v is not None:
            yield GaugeMetricFamily(
                "crackseg_engine_checks_in_flight", "Checks running now", value=v
            )
        for key, name, doc, scale in (
            ("overloaded", "crackseg_engine_overloaded", "1 while the monitor itself is overloaded", 1.0),
            ("loop_lag_ms", "crackseg_engine_loop_lag_seconds", "How late the engine's loop heartbeat ran", 1e-3),
            ("interval_stretch", "crackseg_engine_interval_stretch", "Factor on every interval while shedding load", 1.0),
        ):  # fmt: skip
            v = _num(stats.get(key))
            if v is not None:
                yield GaugeMetricFamily(name, doc, value=v * scale)
        for key, name, doc in (
            ("checks_skipped_busy", "crackseg_engine_checks_skipped_busy",
             "Due checks not started: the deployment's previous check still ran"),
            ("checks_missed", "crackseg_engine_checks_missed",
             "Due checks not started: their time passed while the engine was behind"),
            ("checks_cancelled", "crackseg_engine_checks_cancelled",
             "Checks cancelled when monitoring stopped (not counted as done)"),
            ("checks_due", "crackseg_engine_checks_due",
             "Checks that were due: started, skipped busy or missed"),
        ):  # fmt: skip
            v = _num(stats.get(key))
            if v is not None:
                yield CounterMetricFamily(name, doc, value=v)
        dropped = _num(stats.get("checks_discarded_overload"))
        if dropped is not None:
            yield CounterMetricFamily(
                "crackseg_engine_checks_discarded",
                "Failed checks not held against their deployment: the monitor was overloaded",
                value=dropped,
            )
        started, late_sum = _num(stats.get("checks_started")), _num(stats.get("lateness_sum_s"))
        if started is None or late_sum is None:
            return
        # Quantiles over the engine's window of recent checks; _count and _sum since it started.
        name = "crackseg_engine_lateness_seconds"
        late = Metric(name, "Lateness of started checks against their schedule", "summary")
        for key, q in (("lateness_p50_ms", "0.5"), ("lateness_p99_ms", "0.99")):
            v = _num(stats.get(key))
            if v is not None:
                late.add_sample(name, {"quantile": q}, v / 1000.0)
        late.add_sample(name + "_count", {}, started)
        late.add_sample(name + "_sum", {}, late_sum)
        yield late


def build_registry(
    monitor: MonitorLike,
    uptime: UptimeTracker | None = None,
    monitor_instance: str | None = None,
) -> tuple[LabelledRegistry, UptimeTracker]:
    """A fresh registry holding a :class:`MonitorCollector` over ``monitor``.

    Registers a result listener on ``monitor`` that feeds the response-time histogram and
    ``uptime`` (created over ``monitor.store`` when not given). Returns both. Every series
    gets ``monitor_instance`` (set ``registry.labels["monitor_instance"]`` before the first
    scrape when the value is known only later, e.g. :func:`default_monitor_instance` of the
    bound port).
    """
    tracker = uptime if uptime is not None else UptimeTracker(monitor.store)
    labels = {"monitor_instance": monitor_instance} if monitor_instance else {}
    registry = LabelledRegistry(labels)
    # blackbox_exporter's names (probe_success...) for existing alerts and dashboards.
    probes = ProbeCollector(monitor)
    collector = MonitorCollector(monitor, tracker, probes)
    registry.register(collector)
    registry.register(RolloutEvidenceCollector(monitor.store.deployment_records))
    monitor.add_result_listener(collector.observe)
    monitor.add_result_listener(probes.observe)
    return registry, tracker
