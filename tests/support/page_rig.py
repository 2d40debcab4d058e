"""A monitor over real HTTP targets on 127.0.0.1, its SQLite store in a temporary folder and
its web face, for the status page's tests (API, badges, public view, Chromium)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.suppression import SilenceRegistry
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.monitor_servers import LiveServer

#: A secret in a health URL: it must never reach a page, a badge or the public JSON.
URL_SECRET = "pw-9f31c7d0"


@dataclass
class PageRig:
    target: LiveServer
    monitor: DeploymentHealthMonitor
    server: WebServer
    store: SQLiteStore
    silences: SilenceRegistry

    def add(self, dep_id: str, path: str, checks: int = 2, **kw: Any) -> None:
        """Monitor ``path`` of the target as ``dep_id``; wait for ``checks`` checks."""
        kw.setdefault("check_interval", 0.3)
        url = self.target.url(path).replace("://", f"://user:{URL_SECRET}@", 1)
        self.monitor.add_deployment_monitoring(dep_id, url, **kw)
        assert self.monitor.wait_for_checks(dep_id, checks, 15.0), f"{dep_id} never checked"
        self.store.flush()  # the store writes behind: what was waited for is read from it

    def backfill(self, dep_id: str, start: float, end: float, every: float = 10.0) -> int:
        """Write checks of ``dep_id`` every ``every`` s over [start, end) straight into the
        store (as a long-running monitor would have): every 100th unhealthy, every 50th
        degraded, response times cycling 20-69 ms. Returns how many."""
        n = int((end - start) // every)
        for i in range(n):
            status = "unhealthy" if i % 100 == 0 else "degraded" if i % 50 == 0 else "healthy"
            err = "HTTP 500" if status == "unhealthy" else None
            ts, rt = start + i * every, 20.0 + i % 50
            self.store.add_health(
                dep_id, HealthCheckResult(status == "healthy", status, rt, ts, err)
            )
        self.store.flush()
        return n


@contextmanager
def page_rig(tmp_path: Path, **server_kw: Any) -> Iterator[PageRig]:
    """The rig, monitoring started; ``server_kw`` go to :class:`WebServer` (token...)."""
    store = SQLiteStore(tmp_path / "history.db", flush_interval=0.1, max_queue=1_000_000)
    silences = SilenceRegistry()
    with LiveServer() as target:
        target.set("/ok", status=200, body='{"status": "healthy"}')
        target.set("/deg", status=503, body='{"status": "degraded"}')
        target.set("/bad", status=500, body='{"status": "unhealthy"}')
        monitor = DeploymentHealthMonitor(store=store, failure_threshold=1, success_threshold=1)
        monitor.add_suppressor(silences)  # as the service wires it: silences hold notifications
        try:
            monitor.start_monitoring()
            with WebServer(monitor, silences=silences, **server_kw) as server:
                yield PageRig(target, monitor, server, store, silences)
        finally:
            monitor.close()
