"""Prometheus metrics and uptime windows over a running :class:`DeploymentHealthMonitor`.

:func:`build_registry` gives a private :class:`CollectorRegistry` (never the global one, so
several monitors in one process never collide) whose collector reads the monitor's latest
statuses at scrape time, plus a response-time histogram fed by a result listener.

:class:`UptimeTracker` answers "what share of checks were up over the last 24 h / 7 d" in
constant time per deployment: hourly buckets filled once from the store's history (in the
background), then fed every new result through the monitor's result listener.

Series (label ``deployment_id`` unless noted): ``crackseg_probe_success``,
``crackseg_deployment_status{status}``, ``crackseg_probe_last_response_time_seconds``,
``crackseg_probe_response_time_seconds`` (histogram),
``crackseg_probe_last_check_timestamp_seconds``, ``crackseg_consecutive_failures``,
``crackseg_error_rate_ratio``, ``crackseg_deployment_checks_total``,
``crackseg_uptime_ratio{window="24h"|"7d"}``, ``crackseg_process_running``,
``crackseg_cpu_usage_percent``, ``crackseg_memory_usage_bytes`` (the deployment's process;
absent without a ``process_name``: the machine is not a deployment),
``crackseg_alert_active{alert_type,severity}``; and without it: ``crackseg_active_alerts``,
``crackseg_host_cpu_usage_percent``, ``crackseg_host_memory_usage_bytes``,
``crackseg_host_disk_usage_percent``, ``crackseg_host_network_io_bits_per_second`` (the
machine, once),
``crackseg_alert_notifications_total{handler,result="sent"|"failed"|"retried"|"dead_lettered"|"dropped"}``,
``crackseg_alert_queue_depth{handler}``, ``crackseg_alert_dead_letters{handler}``,
``crackseg_alert_last_error_timestamp_seconds{handler}``,
``crackseg_alert_handler_info{handler,key,kind}``, ``crackseg_monitor_up``,
``crackseg_monitored_deployments``, ``crackseg_engine_checks_total``,
``crackseg_engine_checks_due``, ``crackseg_engine_checks_in_flight``,
``crackseg_engine_lateness_seconds{quantile}``, ``crackseg_engine_overloaded``,
``crackseg_engine_loop_lag_seconds``, ``crackseg_engine_interval_stretch``,
``crackseg_engine_checks_discarded_total``. Also blackbox_exporter's ``probe_success``,
``probe_duration_seconds`` and ``probe_http_status_code`` (:mod:`.probe_metrics`).

>>> # registry, tracker = build_registry(monitor)
>>> # prometheus_client.generate_latest(registry)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crackseg.utils.deployment.models import HealthCheckResult, HealthStatus
from crackseg.utils.deployment.monitoring.uptime import UptimeTracker
from crackseg.utils.deployment.service.probe_metrics import ProbeCollector

__all__ = [
    "RESPONSE_TIME_BUCKETS",
    "MonitorCollector",
    "MonitorLike",
    "UptimeTracker",
    "build_registry",
]

#: Histogram buckets (seconds) for probe response times: 1 ms .. 30 s.
RESPONSE_TIME_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: The ``result`` label values of ``crackseg_alert_notifications_total``.
_DELIVERY_RESULTS = ("sent", "failed", "retried", "dead_lettered", "dropped")


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


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


class MonitorCollector(Collector):
    """Builds every metric family from the monitor's state at scrape time.

    Names use the ``crackseg_`` prefix and base units (seconds, bytes, ratios 0-1).
    """

    def __init__(self, monitor: MonitorLike, uptime: UptimeTracker | None = None) -> None:
        self._monitor = monitor
        self._uptime = uptime
        # Not registered on its own: collect() yields it, after pruning removed deployments.
        self.histogram = Histogram(
            "crackseg_probe_response_time_seconds",
            "Response time of health checks",
            ["deployment_id"],
            buckets=RESPONSE_TIME_BUCKETS,
            registry=None,
        )
        self._observed: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, deployment_id: str, result: HealthCheckResult) -> None:
        """Feed one check result (a monitor result listener; fast, thread-safe)."""
        self.histogram.labels(deployment_id).observe(max(result.response_time_ms, 0.0) / 1000.0)
        with self._lock:
            self._observed.add(deployment_id)
        if self._uptime is not None:
            self._uptime.observe(deployment_id, result)

    def _prune(self, live: dict[str, Any]) -> None:
        with self._lock:
            gone = [d for d in self._observed if d not in live]
            self._observed.difference_update(gone)
        for dep_id in gone:
            with contextlib.suppress(KeyError):
                self.histogram.remove(dep_id)
            if self._uptime is not None:
                self._uptime.forget(dep_id)

    def collect(self) -> Iterator[Metric]:
        m = self._monitor
        statuses = m.get_all_deployment_statuses()
        self._prune(statuses)
        dep = ["deployment_id"]
        success = GaugeMetricFamily(
            "crackseg_probe_success", "1 if the last check was healthy, else 0", labels=dep
        )
        status_g = GaugeMetricFamily(
            "crackseg_deployment_status",
            "1 for the deployment's current health status",
            labels=["deployment_id", "status"],
        )
        last_rt = GaugeMetricFamily(
            "crackseg_probe_last_response_time_seconds",
            "Response time of the last check",
            labels=dep,
        )
        last_check = GaugeMetricFamily(
            "crackseg_probe_last_check_timestamp_seconds", "When the last check ran", labels=dep
        )
        fails = GaugeMetricFamily(
            "crackseg_consecutive_failures", "Failed checks in a row", labels=dep
        )
        err = GaugeMetricFamily(
            "crackseg_error_rate_ratio",
            "Failed share of checks in the error-rate window",
            labels=dep,
        )
        checks = CounterMetricFamily(
            "crackseg_deployment_checks", "Checks done for the deployment", labels=dep
        )
        uptime = GaugeMetricFamily(
            "crackseg_uptime_ratio",
            "Share of checks up (healthy or degraded) over the window",
            labels=["deployment_id", "window"],
        )
        running = GaugeMetricFamily(
            "crackseg_process_running", "1 if the deployment's process runs", labels=dep
        )
        cpu = GaugeMetricFamily(
            "crackseg_cpu_usage_percent", "CPU use of the deployment's process", labels=dep
        )
        mem = GaugeMetricFamily(
            "crackseg_memory_usage_bytes", "Memory (RSS) of the deployment's process", labels=dep
        )
        alert = GaugeMetricFamily(
            "crackseg_alert_active",
            "1 for each firing alert",
            labels=["deployment_id", "alert_type", "severity"],
        )
        n_alerts = 0
        for dep_id, s in statuses.items():
            health = str(s.get("health_status") or HealthStatus.UNKNOWN)
            if health != HealthStatus.UNKNOWN:
                success.add_metric([dep_id], 1.0 if health == HealthStatus.HEALTHY else 0.0)
            for st in HealthStatus:
                status_g.add_metric([dep_id, st.value], 1.0 if health == st.value else 0.0)
            rt = _num(s.get("response_time_ms"))
            if rt is not None:
                last_rt.add_metric([dep_id], rt / 1000.0)
            ts = _num(s.get("last_check"))
            if ts is not None:
                last_check.add_metric([dep_id], ts)
            fails.add_metric([dep_id], _num(s.get("consecutive_failures")) or 0.0)
            rate = _num(s.get("error_rate_percent"))
            if rate is not None:
                err.add_metric([dep_id], rate / 100.0)
            checks.add_metric([dep_id], _num(s.get("total_checks")) or 0.0)
            proc = s.get("process_running")
            if proc is not None:
                running.add_metric([dep_id], 1.0 if proc else 0.0)
            res = s.get("resource_metrics") or {}
            for fam, key, scale in (
                (cpu, "cpu_usage_percent", 1.0),
                (mem, "memory_usage_mb", 1024.0 * 1024.0),
            ):
                v = _num(res.get(key))
                if v is not None:
                    fam.add_metric([dep_id], v * scale)
            for a in s.get("active_alerts") or ():
                n_alerts += 1
                alert.add_metric(
                    [dep_id, str(a.get("alert_type", "")), str(a.get("severity", ""))], 1.0
                )
            if self._uptime is not None:
                for window, pct in self._uptime.uptime(dep_id).items():
                    if pct is not None:
                        uptime.add_metric([dep_id, window], pct / 100.0)
        yield from (success, status_g, last_rt, last_check, fails, err, checks, uptime, running)
        yield from (cpu, mem, alert)
        yield from self._host_families()
        yield from self.histogram.collect()
        yield GaugeMetricFamily(
            "crackseg_active_alerts", "Firing alerts over all deployments", value=n_alerts
        )
        yield from self._dispatcher_families()
        yield from self._engine_families(len(statuses))

    def _host_families(self) -> Iterator[Metric]:
        sample = getattr(self._monitor, "host_metrics", None)
        host = sample() if callable(sample) else None
        if host is None:
            return
        for name, doc, value in (
            ("cpu_usage_percent", "CPU use of the machine, percent", host.cpu_usage_percent),
            ("memory_usage_bytes", "Used memory of the machine", host.memory_usage_mb * 2**20),
            ("disk_usage_percent", "Disk use of the machine, percent", host.disk_usage_percent),
            ("network_io_bits_per_second", "Network throughput of the machine",
             host.network_io_mbps * 1e6),
        ):  # fmt: skip
            yield GaugeMetricFamily(f"crackseg_host_{name}", doc, value=value)

    def _dispatcher_families(self) -> Iterator[Metric]:
        handler = ["handler"]
        notes = CounterMetricFamily(
            "crackseg_alert_notifications",
            "Alert delivery per handler: sent, dead_lettered and dropped count notifications;"
            " failed and retried count tries",
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
        for key, name, doc in (
            ("checks_due", "crackseg_engine_checks_due", "Checks that were due"),
            ("in_flight", "crackseg_engine_checks_in_flight", "Checks running now"),
        ):
            v = _num(stats.get(key))
            if v is not None:
                yield GaugeMetricFamily(name, doc, value=v)
        for key, name, doc, scale in (
            ("overloaded", "crackseg_engine_overloaded", "1 while the monitor itself is overloaded", 1.0),
            ("loop_lag_ms", "crackseg_engine_loop_lag_seconds", "How late the engine's loop heartbeat ran", 1e-3),
            ("interval_stretch", "crackseg_engine_interval_stretch", "Factor on every interval while shedding load", 1.0),
        ):  # fmt: skip
            v = _num(stats.get(key))
            if v is not None:
                yield GaugeMetricFamily(name, doc, value=v * scale)
        dropped = _num(stats.get("checks_discarded_overload"))
        if dropped is not None:
            yield CounterMetricFamily(
                "crackseg_engine_checks_discarded",
                "Failed checks not held against their deployment: the monitor was overloaded",
                value=dropped,
            )
        late = GaugeMetricFamily(
            "crackseg_engine_lateness_seconds",
            "Lateness of checks against their schedule",
            labels=["quantile"],
        )
        for key, q in (("lateness_p50_ms", "0.5"), ("lateness_p99_ms", "0.99")):
            v = _num(stats.get(key))
            if v is not None:
                late.add_metric([q], v / 1000.0)
        yield late


def build_registry(
    monitor: MonitorLike, uptime: UptimeTracker | None = None
) -> tuple[CollectorRegistry, UptimeTracker]:
    """A fresh registry holding a :class:`MonitorCollector` over ``monitor``.

    Registers a result listener on ``monitor`` that feeds the response-time histogram and
    ``uptime`` (created over ``monitor.store`` when not given). Returns both.
    """
    tracker = uptime if uptime is not None else UptimeTracker(monitor.store)
    registry = CollectorRegistry(auto_describe=False)
    collector = MonitorCollector(monitor, tracker)
    registry.register(collector)
    monitor.add_result_listener(collector.observe)
    # blackbox_exporter's names (probe_success...) for existing alerts and dashboards.
    probes = ProbeCollector(monitor)
    registry.register(probes)
    monitor.add_result_listener(probes.observe)
    return registry, tracker
