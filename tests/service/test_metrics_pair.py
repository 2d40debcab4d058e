"""Two monitors of a pair, one Prometheus job with ``honor_labels: true`` (docs/scaling.md).

Each monitor's series carry its own ``monitor_instance`` (default: host name and bound
port), so the pair writes two ``probe_success`` series per deployment, not one series with
samples interleaved from both. The aggregations the docs give are checked on a real
Prometheus: ``max by (deployment_id)`` combines the pair, ``count by (deployment_id)`` says
how many monitors still report, and a stopped monitor's series go stale at once.
"""

from __future__ import annotations

import socket

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.monitor_servers import LiveServer
from tests.support.prometheus import StartPrometheus
from tests.support.prometheus import query_series as _query
from tests.support.wait import wait_until


def _by(rows: list[tuple[dict[str, str], float]], label: str) -> dict[str, float]:
    out = {labels.get(label, ""): value for labels, value in rows}
    assert len(out) == len(rows), f"one series per {label}: {rows}"
    return out


def test_a_pair_scraped_by_one_job_keeps_two_series_and_the_docs_aggregations_work(
    prometheus: StartPrometheus,
) -> None:
    with LiveServer() as target:
        # The same deployment and URL for both; B's timeout is shorter than the answer takes,
        # so the two monitors disagree and the aggregation has something to combine.
        target.set("/slow", status=200, body='{"status": "healthy"}', delay=0.3)
        url = target.url("/slow")
        a, b = DeploymentHealthMonitor(failure_threshold=1), DeploymentHealthMonitor()
        try:
            a.add_deployment_monitoring("api", url, check_interval=0.5, timeout=3.0)
            b.add_deployment_monitoring("api", url, check_interval=0.5, timeout=0.1)
            a.start_monitoring()
            b.start_monitoring()
            with WebServer(a) as web_a:
                web_b = WebServer(b)
                web_b.start()
                try:
                    instance = {
                        "a": f"{socket.gethostname()}:{web_a.port}",
                        "b": f"{socket.gethostname()}:{web_b.port}",
                    }
                    base = prometheus(
                        [f"127.0.0.1:{web_a.port}", f"127.0.0.1:{web_b.port}"],
                        job="pair", honor_labels=True,
                    )  # fmt: skip
                    rows = wait_until(
                        lambda: len(v := _query(base, "probe_success")) == 2 and v,
                        30,
                        "one probe_success series per monitor",
                    )
                    assert _by(rows, "monitor_instance") == {instance["a"]: 1.0, instance["b"]: 0.0}
                    # honor_labels keeps blackbox's instance: the checked URL, on both.
                    assert {labels["instance"] for labels, _ in rows} == {url}
                    assert _by(_query(base, "max by (deployment_id) (probe_success)"),
                               "deployment_id") == {"api": 1.0}  # fmt: skip
                    assert _by(_query(base, "min by (deployment_id) (probe_success)"),
                               "deployment_id") == {"api": 0.0}  # fmt: skip
                    assert _by(_query(base, "count by (deployment_id) (probe_success)"),
                               "deployment_id") == {"api": 2.0}  # fmt: skip
                    # Every series the monitors export tells which one wrote it (up and
                    # scrape_* are Prometheus's own, per target).
                    unlabelled = _query(
                        base, '{job="pair", monitor_instance="", __name__!~"up|scrape_.*"}'
                    )
                    assert unlabelled == []
                    owners = _query(base, 'count by (monitor_instance) ({job="pair"})')
                    assert set(_by(owners, "monitor_instance")) == {*instance.values(), ""}
                finally:
                    web_b.stop()
                # A dead monitor: its target is down and its series are stale at the next
                # scrape; the live one still answers for the deployment.
                wait_until(
                    lambda: (
                        _by(_query(base, 'up{job="pair"}'), "instance")
                        == {f"127.0.0.1:{web_a.port}": 1.0, f"127.0.0.1:{web_b.port}": 0.0}
                    ),
                    30,
                    "the stopped monitor's target down",
                )
                counted = wait_until(
                    lambda: (
                        _by(
                            _query(base, "count by (deployment_id) (probe_success)"),
                            "deployment_id",
                        )
                        == {"api": 1.0}
                    ),
                    30,
                    "one monitor reporting",
                )
                assert counted
                rows = _query(base, "probe_success")
                assert _by(rows, "monitor_instance") == {instance["a"]: 1.0}
        finally:
            a.close()
            b.close()
