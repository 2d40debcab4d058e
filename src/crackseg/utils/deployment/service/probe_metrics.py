"""The blackbox_exporter's probe series, so existing Prometheus alerts and dashboards
keep working when a team switches from blackbox_exporter to this monitor.

``probe_success`` (1 when the last check counted as a success, as the monitor counts
it: healthy), ``probe_duration_seconds`` (its duration) and ``probe_http_status_code``
(0 when no HTTP answer came), each with ``deployment_id`` and ``instance`` (the checked
URL, credentials and secret query values masked: blackbox setups relabel their target
URL into ``instance``). Scrape with ``honor_labels: true`` so Prometheus keeps this
``instance`` instead of renaming it ``exported_instance``.

The last result per deployment comes from the monitor's result listener (nothing is
computed at scrape time); the list of deployments is read once per scrape, so a
deployment that is no longer monitored drops out at the next scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crackseg.utils.deployment.models import HealthCheckResult

__all__ = ["ProbeCollector"]


class ProbeCollector(Collector):
    """``probe_*`` families from the last check of each monitored deployment. Thread-safe."""

    def __init__(self, monitor: Any) -> None:
        self._monitor = monitor
        self._last: dict[str, tuple[float, float, float]] = {}
        self._lock = threading.Lock()

    def observe(self, deployment_id: str, result: HealthCheckResult) -> None:
        """A monitor result listener: keep the facts of the last check (fast)."""
        code = result.details.get("http_status") if result.details else None
        status = float(code) if isinstance(code, int) and not isinstance(code, bool) else 0.0
        facts = (1.0 if result.success else 0.0, max(result.response_time_ms, 0.0) / 1000.0, status)
        with self._lock:
            self._last[deployment_id] = facts

    def collect(self) -> Iterator[Metric]:
        configs: dict[str, dict[str, Any]] = self._monitor.monitored_deployments
        labels = ["deployment_id", "instance"]
        success = GaugeMetricFamily(
            "probe_success", "Whether the probe succeeded (blackbox_exporter name)", labels=labels
        )
        duration = GaugeMetricFamily(
            "probe_duration_seconds", "How long the probe took (blackbox_exporter name)",
            labels=labels,
        )  # fmt: skip
        code = GaugeMetricFamily(
            "probe_http_status_code",
            "HTTP status of the probe's answer, 0 without one (blackbox_exporter name)",
            labels=labels,
        )
        with self._lock:
            for gone in [d for d in self._last if d not in configs]:
                del self._last[gone]
            last = dict(self._last)
        for dep_id, (ok, seconds, status) in last.items():
            key = [dep_id, str(configs[dep_id].get("health_check_url") or "")]
            success.add_metric(key, ok)
            duration.add_metric(key, seconds)
            code.add_metric(key, status)
        yield from (success, duration, code)
