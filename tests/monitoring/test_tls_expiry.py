"""Certificate expiry end to end: a TLS check records the chain's earliest expiry, the
``certificate_expiring`` alert fires and resolves like the others, /metrics exports
``probe_ssl_earliest_cert_expiry``; conditions and gRPC/TCP checks run in the monitor too."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.probe_metrics import ProbeCollector
from tests.support.flip_server import Answer, FlipServer
from tests.support.httpd import QuietHandler, serving
from tests.support.tls_ca import TestCA
from tests.support.wait import wait_until


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"status": "healthy"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def https(openssl_bin: str, tmp_path: Path) -> Iterator[tuple[str, TestCA]]:
    ca = TestCA(openssl_bin, tmp_path)
    leaf = ca.issue("expiring", days=3)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    with serving(_Handler, tls=ctx) as httpd:
        yield httpd.url(scheme="https"), ca


def _alerts(monitor: DeploymentHealthMonitor, kind: str) -> list[dict[str, Any]]:
    return [a for a in monitor.get_active_alerts("tls") if a["alert_type"] == kind]


def test_a_certificate_ending_in_3_days_fires_and_resolves(https: tuple[str, TestCA]) -> None:
    url, ca = https
    monitor = DeploymentHealthMonitor(failure_threshold=1, success_threshold=1)
    collector = ProbeCollector(monitor)
    monitor.add_result_listener(collector.observe)
    args: dict[str, Any] = {"check_interval": 0.2, "tls": {"ca_file": str(ca.cert)}}
    try:
        monitor.add_deployment_monitoring("tls", url, **args)
        monitor.start_monitoring()
        firing = wait_until(lambda: _alerts(monitor, "certificate_expiring"), 20,
                            "certificate_expiring to fire")  # fmt: skip
        assert firing[0]["threshold"] == 14.0
        assert 2.9 < firing[0]["value"] <= 3.0
        assert "TLS certificate expires in 3.0 days (threshold 14 days)" in firing[0]["message"]
        assert monitor.get_deployment_status("tls")["health_status"] == "healthy"  # a warning only
        text = "".join(str(f) for f in collector.families(monitor.monitored_deployments))
        assert "probe_ssl_earliest_cert_expiry" in text
        # the same check with a threshold below 3 days: it resolves
        monitor.add_deployment_monitoring(
            "tls", url, thresholds={"certificate_expiry_days": 2}, **args
        )
        wait_until(lambda: not _alerts(monitor, "certificate_expiring"), 20,
                   "certificate_expiring to resolve")  # fmt: skip
        history = monitor.get_alert_history("tls")
        assert any(a.alert_type == "certificate_expiring" and a.state == "resolved"
                   for a in history)  # fmt: skip
    finally:
        monitor.close()


def test_a_failed_condition_reaches_the_status_and_the_alert(tmp_path: Path) -> None:
    monitor = DeploymentHealthMonitor(failure_threshold=1)
    with FlipServer() as srv:
        srv.answer = Answer(200, b'{"name": "crackseg", "ready": false}')
        try:
            monitor.add_deployment_monitoring(
                "kserve", srv.url(""), check_interval=0.2, preset="kserve_v1", model="crackseg"
            )
            monitor.start_monitoring()
            alert = wait_until(
                lambda: [a for a in monitor.get_active_alerts("kserve")
                         if a["alert_type"] == "health_check_failed"],
                20, "health_check_failed",
            )[0]  # fmt: skip
            assert "[BODY].ready == true: got false" in alert["message"]
            status = monitor.get_deployment_status("kserve")
            assert status["health_status"] == "unhealthy"
            assert status["last_error"] == "[BODY].ready == true: got false"
            assert srv.seen[-1].path == "/v1/models/crackseg"
            srv.answer = Answer(200, b'{"name": "crackseg", "ready": true}')
            wait_until(lambda: monitor.get_deployment_status("kserve")["health_status"] == "healthy",
                       20, "healthy once ready")  # fmt: skip
        finally:
            monitor.close()


def test_grpc_and_tcp_deployments_share_the_monitor(tmp_path: Path) -> None:
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    gport = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.set("crackseg", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)  # the server, as Triton serves it
    listener = socket.create_server(("127.0.0.1", 0))
    monitor = DeploymentHealthMonitor(failure_threshold=1)
    try:
        monitor.add_deployment_monitoring("grpc", f"grpc://127.0.0.1:{gport}", check_interval=0.2,
                                          type="grpc", service="crackseg")  # fmt: skip
        monitor.add_deployment_monitoring("tcp", f"tcp://127.0.0.1:{listener.getsockname()[1]}",
                                          check_interval=0.2, type="tcp", timeout=1)  # fmt: skip
        monitor.add_deployment_monitoring("triton", f"grpc://127.0.0.1:{gport}",
                                          check_interval=0.2, preset="triton")  # fmt: skip
        monitor.start_monitoring()
        assert monitor.wait_for_checks("grpc", 2, 20) and monitor.wait_for_checks("tcp", 2, 20)
        assert monitor.wait_for_checks("triton", 2, 20)
        assert monitor.get_deployment_status("triton")["health_status"] == "healthy"
        assert monitor.get_deployment_status("grpc")["health_status"] == "healthy"
        assert monitor.get_deployment_status("tcp")["health_status"] == "healthy"
        servicer.set("crackseg", health_pb2.HealthCheckResponse.NOT_SERVING)
        listener.close()
        wait_until(lambda: monitor.get_deployment_status("grpc")["last_error"]
                   == "gRPC health: NOT_SERVING", 20, "NOT_SERVING")  # fmt: skip
        wait_until(lambda: monitor.get_deployment_status("tcp")["last_error"]
                   == "connection refused", 20, "tcp refused")  # fmt: skip
        kinds = {a["alert_type"] for a in monitor.get_active_alerts()}
        assert "health_check_failed" in kinds  # the same rules as HTTP checks
        history = monitor.get_health_history("grpc")
        assert history and all(h.response_time_ms >= 0 for h in history)
    finally:
        monitor.close()
        server.stop(None)


def test_prometheus_rules_carry_certificate_expiring(tmp_path: Path, promtool_bin: str) -> None:
    """``crackseg-monitor rules`` gives TLS deployments the same alert over blackbox's series."""
    import subprocess

    import yaml

    from tests.support.service_helpers import cli

    config = tmp_path / "monitor.yaml"
    config.write_text(
        "deployments:\n"
        "  - {id: tls, url: 'https://127.0.0.1:8443/health', check_interval: 10s,\n"
        "     thresholds: {certificate_expiry_days: 7}}\n"
        "  - {id: plain, url: 'http://127.0.0.1:8080/health'}\n"
    )
    rules = tmp_path / "rules.yml"
    done = cli("rules", "-c", str(config), "-o", str(rules))
    assert done.returncode == 0, done.stderr
    check = subprocess.run([promtool_bin, "check", "rules", str(rules)],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    alerts = {(r["labels"]["deployment_id"], r["alert"]): r
              for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}  # fmt: skip
    expr = alerts[("tls", "certificate_expiring")]["expr"]
    assert "probe_ssl_earliest_cert_expiry" in expr and expr.endswith("< 7")
    assert ("plain", "certificate_expiring") not in alerts  # no TLS, no certificate to judge
