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
``crackseg_cpu_usage_percent``, ``crackseg_memory_usage_bytes``, ``crackseg_disk_usage_percent``,
``crackseg_network_io_bits_per_second``, ``crackseg_alert_active{alert_type,severity}``; and
without it: ``crackseg_active_alerts``, ``crackseg_alert_notifications_total{handler,result}``,
``crackseg_alert_queue_depth{handler}``, ``crackseg_monitor_up``,
``crackseg_monitored_deployments``, ``crackseg_engine_checks_total``,
``crackseg_engine_checks_due``, ``crackseg_engine_checks_in_flight``,
``crackseg_engine_lateness_seconds{quantile}``.

>>> # registry, tracker = build_registry(monitor)
>>> # prometheus_client.generate_latest(registry)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .models import HealthCheckResult, HealthStatus

__all__ = ["RESPONSE_TIME_BUCKETS", "MonitorCollector", "UptimeTracker", "build_registry"]

#: Histogram buckets (seconds) for probe response times: 1 ms .. 30 s.
RESPONSE_TIME_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

_HOUR = 3600.0
_WINDOWS = {"24h": 24, "7d": 168}


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


def _is_up(result: HealthCheckResult) -> bool:
    # A degraded answer is a partial outage, not downtime: the service still answers.
    return result.status in (HealthStatus.HEALTHY, HealthStatus.DEGRADED) or result.success


class UptimeTracker:
    """Share of checks that were up (healthy or degraded) per deployment, over 24 h and 7 d.

    Counts live in hourly buckets, so a window covers between 23-24 h (167-168 h) of the
    most recent history: the current hour is partial. Results from ``start`` on come from
    :meth:`observe`; older ones from the store, read once per deployment by a background
    thread the first time its uptime is asked for. Until that read is done the figures
    cover only the checks since ``start`` (reading a week of SQLite history for 1,000
    deployments takes a while, and no request should wait for it). Thread-safe.
    """

    def __init__(self, store: Any, start: float | None = None) -> None:
        self._store = store
        self._start = time.time() if start is None else start
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[int, list[int]]] = {}
        self._seeded: set[str] = set()
        self._pending: deque[str] = deque()
        self._queued: set[str] = set()
        self._worker: threading.Thread | None = None
        self._closed = False

    def observe(self, deployment_id: str, result: HealthCheckResult) -> None:
        """Count one result (called from the monitor's result listener; must stay fast)."""
        if result.timestamp < self._start:
            return  # the store already holds it, seeding will count it
        with self._lock:
            self._add(deployment_id, result.timestamp, _is_up(result))

    def _add(self, deployment_id: str, ts: float, up: bool) -> None:
        buckets = self._buckets.setdefault(deployment_id, {})
        hour = int(ts // _HOUR)
        cell = buckets.get(hour)
        if cell is None:
            cell = buckets[hour] = [0, 0]
            for old in [h for h in buckets if h <= hour - _WINDOWS["7d"]]:
                del buckets[old]
        cell[0] += up
        cell[1] += 1

    def _request_seed(self, deployment_id: str) -> None:
        with self._lock:
            if self._closed or deployment_id in self._seeded or deployment_id in self._queued:
                return
            self._queued.add(deployment_id)
            self._pending.append(deployment_id)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._seed_all, name="crackseg-uptime-seed", daemon=True
                )
                self._worker.start()

    def _seed_all(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._pending:
                    self._worker = None
                    return
                deployment_id = self._pending.popleft()
            since = self._start - _WINDOWS["7d"] * _HOUR
            try:
                rows = self._store.health_history(deployment_id, since=since, until=self._start)
            except Exception:
                rows = []  # a store hiccup must not break the status page; live counts remain
            with self._lock:
                self._queued.discard(deployment_id)
                if deployment_id in self._seeded:
                    continue
                self._seeded.add(deployment_id)
                for r in rows:
                    if r.timestamp < self._start:
                        self._add(deployment_id, r.timestamp, _is_up(r))

    def wait_seeded(self, timeout: float = 10.0) -> bool:
        """Wait until every requested store read is done (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._worker is None:
                    return True
            time.sleep(0.01)
        return False

    def uptime(self, deployment_id: str, now: float | None = None) -> dict[str, float | None]:
        """``{"24h": percent | None, "7d": percent | None}``; None when no check in the window."""
        if deployment_id not in self._seeded:
            self._request_seed(deployment_id)
        hour = int((time.time() if now is None else now) // _HOUR)
        out: dict[str, float | None] = {}
        with self._lock:
            cells = list(self._buckets.get(deployment_id, {}).items())
        for name, span in _WINDOWS.items():
            up = total = 0
            for h, (u, t) in cells:
                if h > hour - span:
                    up += u
                    total += t
            out[name] = round(100.0 * up / total, 3) if total else None
        return out

    def forget(self, deployment_id: str) -> None:
        """Drop the counts of a deployment no longer monitored."""
        with self._lock:
            self._buckets.pop(deployment_id, None)
            self._seeded.discard(deployment_id)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background store reads (the one in progress finishes)."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None:
            worker.join(timeout)


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
        cpu = GaugeMetricFamily("crackseg_cpu_usage_percent", "CPU use, percent", labels=dep)
        mem = GaugeMetricFamily("crackseg_memory_usage_bytes", "Memory use (RSS)", labels=dep)
        disk = GaugeMetricFamily("crackseg_disk_usage_percent", "Disk use, percent", labels=dep)
        net = GaugeMetricFamily(
            "crackseg_network_io_bits_per_second", "Network throughput", labels=dep
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
                (disk, "disk_usage_percent", 1.0),
                (net, "network_io_mbps", 1e6),
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
        yield from (cpu, mem, disk, net, alert)
        yield from self.histogram.collect()
        yield GaugeMetricFamily(
            "crackseg_active_alerts", "Firing alerts over all deployments", value=n_alerts
        )
        yield from self._dispatcher_families()
        yield from self._engine_families(len(statuses))

    def _dispatcher_families(self) -> Iterator[Metric]:
        notes = CounterMetricFamily(
            "crackseg_alert_notifications",
            "Alert notifications per handler and result",
            labels=["handler", "result"],
        )
        queued = GaugeMetricFamily(
            "crackseg_alert_queue_depth", "Notifications waiting per handler", labels=["handler"]
        )
        dispatcher = getattr(self._monitor, "dispatcher", None)
        stats: dict[str, dict[str, Any]] = dispatcher.stats() if dispatcher is not None else {}
        for handler, st in stats.items():
            for result in ("sent", "failed", "dropped"):
                notes.add_metric([handler, result], _num(st.get(result)) or 0.0)
            queued.add_metric([handler], _num(st.get("queued")) or 0.0)
        yield notes
        yield queued

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
    return registry, tracker
