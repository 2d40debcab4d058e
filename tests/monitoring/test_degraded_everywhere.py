"""Degraded, decided once (monitoring/uptime.py) and read the same on every surface: the
status, the export, the API (the page's JSON) and /metrics agree for a deployment that
answers degraded: up for uptime and probe_success, no error for the error rate, and its
own share, degraded_percent (crackseg_degraded_ratio)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.monitor_servers import LiveServer

DEGRADED_BODY = '{"status": "degraded", "issues": ["cache_down"], "version": "1.0.0"}'
PATHS = {"deg": "/deg", "ok": "/ok", "bad": "/bad"}
CHECKS = 4


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def _sample(text: str, name: str, deployment_id: str) -> float:
    for line in text.splitlines():
        m = re.match(rf"{name}{{(.*)}} (\S+)$", line)
        if m and f'deployment_id="{deployment_id}"' in m.group(1):
            return float(m.group(2))
    raise AssertionError(f"no {name} sample for {deployment_id}")


def test_every_surface_reads_degraded_the_same(tmp_path: Path) -> None:
    with LiveServer() as server:
        # The spec's example endpoint answers degraded with a 503.
        server.set("/deg", status=503, body=DEGRADED_BODY)
        server.set("/ok", status=200, body='{"status": "healthy", "version": "1.1.0"}')
        server.set("/bad", status=500, body='{"status": "unhealthy"}')
        monitor = DeploymentHealthMonitor(failure_threshold=1)
        web = WebServer(monitor)  # registers its listeners before the first check
        try:
            web.start()
            for dep_id, path in PATHS.items():
                monitor.add_deployment_monitoring(dep_id, server.url(path), check_interval=0.1)
            monitor.start_monitoring()
            for dep_id in PATHS:
                assert monitor.wait_for_checks(dep_id, CHECKS, 15.0)
            monitor.stop_monitoring()
            status = monitor.get_all_deployment_statuses()
            export = json.loads(monitor.export_monitoring_data(tmp_path / "x.json").read_text())
            api = {
                d["deployment_id"]: d for d in _get(f"{web.url}/api/v1/deployments")["deployments"]
            }
            one = _get(f"{web.url}/api/v1/deployments/deg")
            metrics = _get(f"{web.url}/metrics")
            alerts = monitor.get_active_alerts("deg")
        finally:
            web.stop()
            monitor.close()

    deg = status["deg"]
    assert deg["health_status"] == "degraded"
    assert deg["uptime_percent"] == 100.0
    assert deg["error_rate_percent"] == 0.0
    assert deg["degraded_percent"] == 100.0
    assert status["ok"]["degraded_percent"] == 0.0
    assert status["bad"]["uptime_percent"] == 0.0
    assert status["bad"]["error_rate_percent"] == 100.0
    assert status["bad"]["degraded_percent"] == 0.0

    keys = ("health_status", "uptime_percent", "error_rate_percent", "degraded_percent")
    for dep_id in PATHS:
        want = {k: status[dep_id][k] for k in keys}
        assert {k: export["monitored_deployments"][dep_id]["status"][k] for k in keys} == want
        assert {k: api[dep_id][k] for k in keys} == want
    assert {k: one[k] for k in keys} == {k: deg[k] for k in keys}
    # The 24 h window of the API and page counts degraded as up too.
    assert api["deg"]["uptime_24h_percent"] == 100.0
    assert api["bad"]["uptime_24h_percent"] == 0.0

    for dep_id, up, degraded in (("deg", 1.0, 1.0), ("ok", 1.0, 0.0), ("bad", 0.0, 0.0)):
        assert _sample(metrics, "probe_success", dep_id) == up, dep_id
        assert _sample(metrics, "crackseg_degraded_ratio", dep_id) == degraded, dep_id
        assert _sample(metrics, "crackseg_error_rate_ratio", dep_id) == 1.0 - up, dep_id
    # Impaired still alerts, as a warning; the error-rate rule stays quiet.
    assert [(a["alert_type"], a["severity"]) for a in alerts] == [
        ("health_check_failed", "warning")
    ]
