"""blackbox_exporter's probe names in /metrics, scraped by a real Prometheus."""

from __future__ import annotations

import requests

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.monitor_servers import LiveServer
from tests.support.prometheus import StartPrometheus
from tests.support.wait import wait_until


def _query(base: str, promql: str) -> dict[tuple[str, str], float]:
    r = requests.get(base + "/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    return {
        (res["metric"].get("deployment_id", ""), res["metric"].get("instance", "")): float(
            res["value"][1]
        )
        for res in r.json()["data"]["result"]
    }


def test_prometheus_scrapes_blackbox_probe_series(prometheus: StartPrometheus) -> None:
    with LiveServer() as target:
        target.set("/ok", status=200, body='{"status": "healthy"}', delay=0.03)
        target.set("/down", status=503, body='{"status": "unhealthy"}')
        ok_url = target.url("/ok") + "?token=hunter2"
        monitor = DeploymentHealthMonitor(failure_threshold=1)
        try:
            monitor.add_deployment_monitoring("web", ok_url, check_interval=0.25)
            monitor.add_deployment_monitoring("db", target.url("/down"), check_interval=0.25)
            monitor.add_deployment_monitoring("gone", target.url("/ok"), check_interval=0.25)
            monitor.start_monitoring()
            with WebServer(monitor) as server:
                text = wait_until(
                    lambda: (
                        (t := requests.get(server.url + "/metrics", timeout=5).text)
                        and 'probe_success{deployment_id="gone"' in t
                        and t
                    ),
                    20,
                    "probe series in /metrics",
                )
                assert "hunter2" not in text
                monitor.remove_deployment_monitoring("gone")
                base = prometheus([f"127.0.0.1:{server.port}"], honor_labels=True)
                success = wait_until(
                    lambda: (v := _query(base, "probe_success")) and len(v) == 2 and v,
                    20,
                    "both probe_success series",
                )
                web = next(k for k in success if k[0] == "web")
                # instance is the checked URL, secret masked, as blackbox setups relabel it.
                assert web[1].startswith(target.url("/ok")) and "hunter2" not in web[1]
                assert success == {web: 1.0, ("db", target.url("/down")): 0.0}
                codes = _query(base, "probe_http_status_code")
                assert {k[0]: v for k, v in codes.items()} == {"web": 200.0, "db": 503.0}
                duration = {k[0]: v for k, v in _query(base, "probe_duration_seconds").items()}
                assert 0.025 < duration["web"] < 2.0
                # A blackbox-style alert expression works unchanged.
                down = _query(base, "probe_success == 0 and probe_http_status_code >= 500")
                assert [k[0] for k in down] == ["db"]
        finally:
            monitor.close()
