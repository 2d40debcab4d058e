"""The blackbox_exporter's probe series, so existing Prometheus alerts and dashboards
keep working when a team switches from blackbox_exporter to this monitor.

``probe_success`` (1 when the last check was up, as the monitor counts it: healthy or
degraded, :func:`~crackseg.utils.deployment.monitoring.uptime.is_up`),
``probe_duration_seconds`` (its duration) and ``probe_http_status_code`` (0 when no HTTP
answer came), ``probe_ssl_earliest_cert_expiry`` (UNIX time the earliest certificate of
the chain ends, for deployments whose last check saw one), each with ``deployment_id``
and ``instance`` (the checked
URL, credentials and secret query values masked: blackbox setups relabel their target
URL into ``instance``). Scrape with ``honor_labels: true`` so Prometheus keeps this
``instance`` instead of renaming it ``exported_instance``; which monitor wrote a series is
then its ``monitor_instance`` label (added to every series by the registry, see
:class:`~.exposition.LabelledRegistry`).

The last result per deployment comes from the monitor's result listener (nothing is
computed at scrape time); the list of deployments is read once per scrape, so a
deployment that is no longer monitored drops out at the next scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.uptime import is_up
from crackseg.utils.deployment.service.text_family import TextFamily

__all__ = ["ProbeCollector"]


class ProbeCollector(Collector):
    """``probe_*`` families from the last check of each monitored deployment. Thread-safe."""

    def __init__(self, monitor: Any) -> None:
        self._monitor = monitor
        self._last: dict[str, tuple[float, float, float]] = {}
        self._cert: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(self, deployment_id: str, result: HealthCheckResult) -> None:
        """A monitor result listener: keep the facts of the last check (fast)."""
        code = result.details.get("http_status") if result.details else None
        status = float(code) if isinstance(code, int) and not isinstance(code, bool) else 0.0
        up = 1.0 if is_up(result.status) else 0.0
        facts = (up, max(result.response_time_ms, 0.0) / 1000.0, status)
        not_after = result.details.get("cert_not_after") if result.details else None
        with self._lock:
            self._last[deployment_id] = facts
            if not_after is not None:
                self._cert[deployment_id] = float(not_after)
            elif self._cert:
                self._cert.pop(deployment_id, None)  # as blackbox: only while a TLS probe saw one

    def collect(self) -> Iterator[Metric]:
        yield from self.families(self._monitor.monitored_deployments)

    def families(self, deployments: Mapping[str, Mapping[str, Any]]) -> list[TextFamily]:
        """The four families for ``deployments`` (id -> a dict with ``health_check_url``:
        the monitor's configs or statuses, so :class:`~.metrics.MonitorCollector` reuses
        the statuses it read for the scrape)."""
        labels = ["deployment_id", "instance"]
        with self._lock:
            for gone in [d for d in self._last if d not in deployments]:
                del self._last[gone]
                self._cert.pop(gone, None)
            # Keys and the stored tuples, not items(): no new tuple per deployment (10,000
            # tracked objects a scrape set off a full garbage collection every other scrape).
            ids = list(self._last)
            facts = list(self._last.values())
            cert_ids, cert_ends = list(self._cert), list(self._cert.values())
        # The public URL: credentials and secret query values already masked.
        urls = [str(deployments[d].get("health_check_url") or "") for d in ids]
        ok, seconds, status = ([f[i] for f in facts] for i in range(3))
        cert_urls = [str(deployments[d].get("health_check_url") or "") for d in cert_ids]
        return [
            TextFamily(
                "probe_success", "Whether the probe succeeded (blackbox_exporter name)",
                "gauge", labels, [ids, urls], ok,
            ),
            TextFamily(
                "probe_duration_seconds", "How long the probe took (blackbox_exporter name)",
                "gauge", labels, [ids, urls], seconds,
            ),
            TextFamily(
                "probe_http_status_code",
                "HTTP status of the probe's answer, 0 without one (blackbox_exporter name)",
                "gauge", labels, [ids, urls], status,
            ),
            TextFamily(
                "probe_ssl_earliest_cert_expiry",
                "Earliest certificate expiry in the chain, UNIX time (blackbox_exporter name)",
                "gauge", labels, [cert_ids, cert_urls], cert_ends,
            ),
        ]  # fmt: skip
