"""When the history store loses writes, the service says so: an alert and two series.

A full disk, a damaged page or a read-only file makes every commit of the SQLite store fail
(and a file deleted under the running service loses every row at close);
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
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["STORE_FAILING", "StoreCollector", "StoreWatch", "store_health"]

logger = logging.getLogger("crackseg.utils.deployment.service")

#: The alert type (its deployment id is the monitor's own, ``monitor.MONITOR_ID``).
STORE_FAILING = "monitor_store_failing"


def store_health(store: Any) -> dict[str, Any] | None:
    """``store.health()`` for stores that report it (SQLite), else None; a store whose
    file was deleted or replaced under it is failing too (its rows are lost at close)."""
    health = getattr(store, "health", None)
    if not callable(health):
        return None
    result: dict[str, Any] = health()
    identity = getattr(store, "file_identity", None)
    problem = identity.problem() if identity is not None else None
    if problem is not None and result["ok"]:
        result = {**result, "ok": False, "reason": problem, "since": result.get("since")}
    return result


class StoreWatch:
    """Polls the monitor's store; fires and resolves :data:`STORE_FAILING` on transitions
    (through ``monitor.self_alert``: recorded, resolved to the handlers that got it)."""

    def __init__(self, monitor: Any, interval: float = 1.0) -> None:
        self._monitor = monitor
        self.interval = interval
        self.firing = False

    def poll(self) -> bool:
        """Compare the store's health with the last poll; True when an alert was sent."""
        health = store_health(self._monitor.store)
        if health is None or health["ok"] != self.firing:
            return False
        path = getattr(self._monitor.store, "path", "the history store")
        lost = health["rows_lost"]
        if self.firing:
            message = f"resolved: history store {path} writes again ({lost} rows were lost)"
        else:
            message = (
                f"history store {path} is losing writes: {health['reason']} "
                f"({lost} rows lost so far)"
            )
        self.firing = not self.firing
        return bool(
            self._monitor.self_alert(STORE_FAILING, message, firing=self.firing, value=float(lost))
        )

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
