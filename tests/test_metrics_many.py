"""/metrics over many deployments: valid text (prometheus_client's parser reads it back),
every documented family, one series per deployment that matches its status, secrets masked,
removed deployments gone; busy checks, skipped/missed checks and coalesced deliveries exported.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from crackseg.utils.deployment.delivery.channels.log import LoggingAlertHandler
from crackseg.utils.deployment.health_monitoring import (
    DeploymentHealthMonitor,
    HealthChecker,
    HealthCheckResult,
)
from crackseg.utils.deployment.service import metrics
from crackseg.utils.deployment.service.exposition import text_exposition
from crackseg.utils.deployment.service.metrics import build_registry
from tests._monitor_servers import LiveServer
from tests._wait import wait_until

N = 1_000
SECRET = "s3cr3t-t0ken"


def _families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.name, s.labels, s.value) for s in fam.samples]
    return out


def _documented() -> set[str]:
    names = set(re.findall(r"``(crackseg_[a-z_]+)", metrics.__doc__ or ""))
    names |= {"probe_success", "probe_duration_seconds", "probe_http_status_code"}
    # The parser names a counter family without its _total suffix.
    return {n.removesuffix("_total") for n in names}


def test_many_deployments_parse_back_whole_and_match_their_statuses() -> None:
    with LiveServer() as target:
        target.set("/ok", status=200, body='{"status": "healthy"}')
        target.set("/down", status=500, body='{"status": "unhealthy"}')
        m = DeploymentHealthMonitor(failure_threshold=1)
        m.add_alert_handler(LoggingAlertHandler())
        try:
            registry, _ = build_registry(m)
            ids = [f"svc-{i:04d}.eu:a@b#{i % 7}" for i in range(N)]
            for i, dep in enumerate(ids):
                path = "/down" if i % 5 == 0 else "/ok"
                url = target.url(f"{path}?d={i}&token={SECRET}").replace(
                    "http://", f"http://user:{SECRET}@"
                )
                m.add_deployment_monitoring(
                    dep, url, check_interval=2.0, process_name="python" if i < 3 else None
                )
            m.start_monitoring()
            wait_until(
                lambda: all(s["total_checks"] for s in m.get_all_deployment_statuses().values()),
                60,
                "a first check of every deployment",
            )
            m.stop_monitoring()  # a still state: statuses and scrape see the same numbers
            statuses = m.get_all_deployment_statuses()
            body = text_exposition(registry)
            assert body == generate_latest(registry)
            m.remove_deployment_monitoring(ids[0])
            after_removal = text_exposition(registry).decode()
        finally:
            m.close()
    text = body.decode()
    assert SECRET not in text
    fams = _families(text)  # raises on anything that is not valid text format
    missing = _documented() - set(fams)
    assert not missing, f"documented but not exported: {sorted(missing)}"

    def per_deployment(family: str, sample: str | None = None) -> dict[str, float]:
        rows = [(lab, v) for name, lab, v in fams[family] if sample is None or name == sample]
        values = {lab["deployment_id"]: v for lab, v in rows}
        assert len(values) == len(rows), f"{family}: one sample per deployment"
        return values

    checks = per_deployment("crackseg_deployment_checks")
    assert checks == {d: float(s["total_checks"]) for d, s in statuses.items()}
    assert per_deployment("crackseg_deployment_busy_checks") == dict.fromkeys(ids, 0.0)
    success = per_deployment("crackseg_probe_success")
    assert success == {d: float(s["health_status"] == "healthy") for d, s in statuses.items()}
    assert sum(v == 0.0 for v in success.values()) >= N // 5
    assert per_deployment("probe_success") == success
    counts = per_deployment(
        "crackseg_probe_response_time_seconds", "crackseg_probe_response_time_seconds_count"
    )
    assert counts == checks  # every check observed once
    status_rows = Counter(lab["deployment_id"] for _, lab, _ in fams["crackseg_deployment_status"])
    assert set(status_rows.values()) == {4} and len(status_rows) == N
    instances = {lab["instance"] for _, lab, _ in fams["probe_duration_seconds"]}
    assert len(instances) == N and all("user:***@" in u for u in instances)
    alerts = Counter(lab["deployment_id"] for _, lab, _ in fams["crackseg_alert_active"])
    assert set(alerts) == {d for d, s in statuses.items() if s["active_alerts"]}
    (active,) = fams["crackseg_active_alerts"]
    assert active[2] == sum(len(s["active_alerts"]) for s in statuses.values()) > 0
    results = {lab["result"] for _, lab, _ in fams["crackseg_alert_notifications"]}
    assert results == {"sent", "failed", "retried", "dead_lettered", "coalesced", "dropped"}
    # A removed deployment leaves every family (the histogram and uptime included).
    assert f'"{ids[0]}"' not in after_removal and f'"{ids[1]}"' in after_removal


class _BlockingChecker(HealthChecker):
    """A synchronous custom checker that holds its thread until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
        self.release.wait()
        return HealthCheckResult(True, "healthy", 1.0)

    def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
        return True


def test_busy_checks_and_the_engines_skipped_checks_are_exported() -> None:
    checker = _BlockingChecker()
    m = DeploymentHealthMonitor(checker)
    try:
        registry, _ = build_registry(m)
        m.add_deployment_monitoring(
            "slow", "http://127.0.0.1:9/slow", check_interval=0.2, timeout=0.2
        )
        m.start_monitoring()
        wait_until(lambda: m.get_deployment_status("slow")["busy_checks"] >= 2, 10, "busy checks")
        checker.release.set()
        m.stop_monitoring()
        busy = m.get_deployment_status("slow")["busy_checks"]
        stats = m.engine_stats()
        fams = _families(text_exposition(registry).decode())
    finally:
        checker.release.set()
        m.close()
    assert fams["crackseg_deployment_busy_checks"] == [
        ("crackseg_deployment_busy_checks_total", {"deployment_id": "slow"}, float(busy))
    ]
    for key, family in (
        ("checks_skipped_busy", "crackseg_engine_checks_skipped_busy"),
        ("checks_missed", "crackseg_engine_checks_missed"),
        ("checks_cancelled", "crackseg_engine_checks_cancelled"),
        ("checks_due", "crackseg_engine_checks_due"),
    ):
        ((_, _, value),) = fams[family]
        assert value == float(stats[key]), family
