"""One definition of "up" (healthy or degraded): the status, the uptime windows, the API and
``crackseg-monitor status`` read from the stored history all agree, for a degraded service too."""

from __future__ import annotations

from pathlib import Path

from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.uptime import UptimeTracker, is_up
from crackseg.utils.deployment.service.cli.support import status_rows_from_store
from crackseg.utils.deployment.service.config import parse_config
from tests.support.monitor_servers import LiveServer


def test_is_up_counts_healthy_and_degraded_only() -> None:
    assert [is_up(s) for s in ("healthy", "degraded", "unhealthy", "unknown")] == [
        True,
        True,
        False,
        False,
    ]


def test_status_windows_and_offline_cli_agree_on_a_degraded_service(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    with LiveServer() as server:
        server.set("/ok", status=200, body='{"status": "healthy"}')
        server.set("/deg", status=503, body='{"status": "degraded", "issues": ["cache_down"]}')
        server.set("/bad", status=500, body='{"status": "unhealthy"}')
        paths = {"ok": "/ok", "deg": "/deg", "bad": "/bad"}
        monitor = DeploymentHealthMonitor(store=SQLiteStore(str(db), flush_interval=0.05))
        tracker = UptimeTracker(monitor.store, start=0.0)
        monitor.add_result_listener(tracker.observe)
        try:
            for dep_id, path in paths.items():
                monitor.add_deployment_monitoring(dep_id, server.url(path), check_interval=0.1)
            monitor.start_monitoring()
            for dep_id in paths:
                assert monitor.wait_for_checks(dep_id, 3, 15.0)
            monitor.stop_monitoring()
            statuses = monitor.get_all_deployment_statuses()
            windows = {d: tracker.uptime(d)["24h"] for d in paths}
        finally:
            monitor.close()
            tracker.close()
    live = {d: s["uptime_percent"] for d, s in statuses.items()}
    assert live == {"ok": 100.0, "deg": 100.0, "bad": 0.0}
    assert windows == live
    cfg = parse_config(
        {
            "deployments": [{"id": d, "url": f"http://127.0.0.1:9{p}"} for d, p in paths.items()],
            "store": {"path": str(db)},
        },
        source=None,
    )
    offline = {r["deployment_id"]: r["uptime_24h_percent"] for r in status_rows_from_store(cfg)}
    assert offline == live
