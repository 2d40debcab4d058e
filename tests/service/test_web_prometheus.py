"""A real Prometheus (Debian ``prometheus``) scrapes the web face's /metrics; PromQL through
its HTTP API returns the probe series with the values the monitor measured."""

from __future__ import annotations

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.monitor_servers import LiveServer
from tests.support.prometheus import StartPrometheus, query
from tests.support.wait import wait_until


def test_prometheus_scrapes_probe_series(prometheus: StartPrometheus) -> None:
    with LiveServer() as target:
        target.set("/ok", status=200, body='{"status": "healthy"}', delay=0.02)
        target.set("/down", status=500, body='{"status": "unhealthy"}')
        monitor = DeploymentHealthMonitor(failure_threshold=1)
        try:
            monitor.add_deployment_monitoring("web", target.url("/ok"), check_interval=0.25)
            monitor.add_deployment_monitoring("db", target.url("/down"), check_interval=0.25)
            monitor.start_monitoring()
            with WebServer(monitor) as server:
                base = prometheus([f"127.0.0.1:{server.port}"])
                up = wait_until(lambda: query(base, 'up{job="crackseg"}'), 20, "a first scrape")
                assert up == {"": 1.0}

                success = wait_until(
                    lambda: (v := query(base, "probe_success")) and len(v) == 2 and v,
                    20,
                    "both probe series",
                )
                assert success == {"web": 1.0, "db": 0.0}
                status = query(base, 'crackseg_deployment_status{status="unhealthy"} == 1')
                assert set(status) == {"db"}
                failing = query(base, "crackseg_consecutive_failures")
                assert failing["web"] == 0 and failing["db"] >= 1

                # The histogram's count grows with the checks; the 20 ms delay shows in it.
                counts = wait_until(
                    lambda: (
                        (v := query(base, "crackseg_probe_response_time_seconds_count"))
                        and v.get("web", 0) >= 4
                        and v
                    ),
                    20,
                    "histogram counts",
                )
                assert counts["db"] >= 1
                slow = query(
                    base,
                    'crackseg_probe_response_time_seconds_bucket{le="0.01"}'
                    " / ignoring(le) crackseg_probe_response_time_seconds_count",
                )
                assert slow["web"] < 0.5  # most web checks took longer than 10 ms
                last = query(base, "probe_duration_seconds")
                assert 0.015 < last["web"] < 2.0
                assert query(base, "crackseg_monitor_up") == {"": 1.0}
                assert query(base, "crackseg_monitored_deployments") == {"": 2.0}
        finally:
            monitor.close()
