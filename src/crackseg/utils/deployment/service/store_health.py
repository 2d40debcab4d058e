"""When the history store loses writes, the service says so: an alert and two series.

A full disk, a damaged page or a read-only file makes every commit of the SQLite store fail;
checks go on, but their history is lost. :class:`StoreWatch` turns the store's
``health()`` into the ``monitor_store_failing`` alert (critical), sent through the
configured handlers when writes start failing and resolved, to the same handlers, once a
commit succeeds again. :class:`StoreCollector` exports ``crackseg_store_failing`` and
``crackseg_store_rows_lost_total``; ``/healthz`` answers 503 with the reason meanwhile.

>>> # watch = StoreWatch(monitor); await watch.run()   # the service does this
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crackseg.utils.deployment.models import AlertEvent, DeploymentMetadata

__all__ = ["MONITOR_ID", "STORE_FAILING", "StoreCollector", "StoreWatch", "store_health"]

logger = logging.getLogger("crackseg.utils.deployment.service")

#: The alert type, and the deployment id alerts about the monitor itself carry.
STORE_FAILING = "monitor_store_failing"
MONITOR_ID = "crackseg-monitor"


def store_health(store: Any) -> dict[str, Any] | None:
    """``store.health()`` for stores that report it (SQLite), else None."""
    health = getattr(store, "health", None)
    return health() if callable(health) else None


class StoreWatch:
    """Polls the monitor's store; fires and resolves :data:`STORE_FAILING` on transitions."""

    def __init__(self, monitor: Any, interval: float = 1.0) -> None:
        self._monitor = monitor
        self.interval = interval
        self._firing: AlertEvent | None = None
        self._sent: list[str] = []
        self._meta = DeploymentMetadata(deployment_id=MONITOR_ID, state="monitoring")

    @property
    def firing(self) -> bool:
        return self._firing is not None

    def poll(self) -> AlertEvent | None:
        """Compare the store's health with the last poll; returns the transition sent."""
        health = store_health(self._monitor.store)
        if health is None:
            return None
        now = time.time()
        path = getattr(self._monitor.store, "path", "the history store")
        if not health["ok"] and self._firing is None:
            ev = AlertEvent(
                MONITOR_ID, STORE_FAILING, "critical", "firing",
                f"history store {path} is losing writes: {health['reason']} "
                f"({health['rows_lost']} rows lost so far)",
                float(health["rows_lost"]), None, started_at=health["since"] or now, timestamp=now,
            )  # fmt: skip
            self._firing = ev
            self._sent = self._send(ev, None)
            return ev
        if health["ok"] and self._firing is not None:
            started, self._firing = self._firing, None
            ev = AlertEvent(
                MONITOR_ID, STORE_FAILING, "critical", "resolved",
                f"resolved: history store {path} writes again "
                f"({health['rows_lost']} rows were lost)",
                float(health["rows_lost"]), None, started_at=started.started_at, timestamp=now,
                resolved_at=now,
            )  # fmt: skip
            self._send(ev, self._sent)
            self._sent = []
            return ev
        return None

    def _send(self, ev: AlertEvent, keys: list[str] | None) -> list[str]:
        # Recorded too: the alert store retries it until the disk takes it.
        self._monitor.store.add_alert(ev)
        sent: list[str] = self._monitor.dispatcher.dispatch(
            ev.alert_type, self._meta, handler_keys=keys,
            severity=ev.severity, message=ev.message, value=ev.value, threshold=None,
            state=ev.state, firing=ev.state == "firing", resolved=ev.state == "resolved",
            repeat=False, started_at=ev.started_at, timestamp=ev.timestamp,
            deployment_id=MONITOR_ID,
        )  # fmt: skip
        return sent

    async def run(self) -> None:
        """Poll every ``interval`` seconds until cancelled."""
        while True:
            try:
                self.poll()
            except Exception:
                logger.exception("store health check failed")
            await asyncio.sleep(self.interval)


class StoreCollector(Collector):
    """``crackseg_store_failing`` (1 while commits fail) and ``crackseg_store_rows_lost_total``."""

    def __init__(self, monitor: Any) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        health = store_health(self._monitor.store)
        if health is None:
            return
        yield GaugeMetricFamily(
            "crackseg_store_failing",
            "1 while the history store's commits fail (disk full, damaged, read-only)",
            value=0.0 if health["ok"] else 1.0,
        )
        yield CounterMetricFamily(
            "crackseg_store_rows_lost",
            "Health and resource rows lost to failed history store commits",
            value=float(health["rows_lost"]),
        )
