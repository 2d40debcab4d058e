"""PerformanceMonitor and canary analysis from a real Prometheus server scraping real services."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.orchestration import (
    DeploymentConfig,
    DeploymentOrchestrator,
    PerformanceMonitor,
)
from crackseg.utils.deployment.processes import free_port
from crackseg.utils.deployment.rollout.analysis import query_prometheus
from crackseg.utils.deployment.rollout.routers.callback import CallbackRouter
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
from tests.support.prometheus import StartPrometheus
from tests.support.runtime import http_get, sample_target, start_instance
from tests.support.wait import wait_until

PREDICT = 'route="/predict"'
# Counters since the process started: each version here is a fresh process. In production
# use increase(...[window]) so that a long-lived stable version is judged on recent traffic.
QUERIES = {
    "requests": f'sum(http_requests_total{{{PREDICT},instance=~"{{instances}}"}})',
    "error_rate_percent": (
        f'100 * sum(http_requests_total{{{PREDICT},code=~"5..",instance=~"{{instances}}"}}) '
        f'/ sum(http_requests_total{{{PREDICT},instance=~"{{instances}}"}})'
    ),
    "p95_ms": (
        "1000 * histogram_quantile(0.95, sum by (le) "
        f'(http_request_duration_seconds_bucket{{{PREDICT},instance=~"{{instances}}"}}))'
    ),
}


@pytest.fixture
def target(tmp_path: Path) -> Iterator[ProcessTarget]:
    with sample_target(tmp_path, version_args={"v3e": ["--error-rate", "0.3"]}) as t:
        yield t


def test_performance_monitor_reads_a_prometheus_server(
    prometheus: StartPrometheus, target: ProcessTarget
) -> None:
    inst = start_instance(target, "v1")
    assert http_get(inst.url + "/admin/fail?mode=errors&error_rate=0.25", method="POST")[0] == 200
    for _ in range(40):
        http_get(inst.url + "/predict")
    base = prometheus([inst.address], job="sample", interval="500ms")
    regex = inst.address.replace(".", "\\\\.")
    queries = {k: q.replace("{instances}", regex) for k, q in QUERIES.items()}
    pm = PerformanceMonitor(prometheus_url=base, queries=queries)
    wait_until(lambda: pm.snapshot(min_samples=40).requests == 40, 20, "a scrape with 40 requests")
    snap = pm.snapshot(min_samples=40)
    assert snap.source == "prometheus" and snap.enough_data
    assert snap.error_rate_percent == pytest.approx(25.0)
    assert snap.errors == 10
    assert snap.p95_ms is not None and 0 < snap.p95_ms < 1000
    assert not pm.snapshot(min_samples=41).enough_data
    # No data is None, never zero; a broken query is an error, not a figure.
    assert query_prometheus(base, 'http_requests_total{route="/nowhere"}') is None
    broken = PerformanceMonitor(prometheus_url=base, queries={"p95_ms": "sum(("}).snapshot()
    assert broken.error is not None and "p95_ms" in broken.error and not broken.enough_data


def test_canary_judged_by_prometheus_rolls_back_a_failing_version(
    prometheus: StartPrometheus, target: ProcessTarget
) -> None:
    # Ports fixed ahead so that Prometheus scrapes both versions from the start.
    stable_port, canary_port = free_port(), free_port()
    base = prometheus(
        [f"127.0.0.1:{stable_port}", f"127.0.0.1:{canary_port}"], job="sample", interval="500ms"
    )
    with DeploymentOrchestrator(router=CallbackRouter(), target=target) as orch:
        common = dict(
            check_interval=0.2,
            success_threshold=1,
            bake_seconds=4.0,
            prometheus_url=base,
            prometheus_queries=QUERIES,
            min_samples=10,
            keep_old_seconds=0.0,
            grace_period=3.0,
        )
        # No traffic yet: Prometheus has no data, which fails closed by default (it cannot
        # tell an idle service from a broken query); this first version goes on by choice.
        stable = orch.deploy_with_strategy(
            DeploymentConfig("m", "prod", version="v1", on_inconclusive="proceed", **common),
            "blue_green",
            port=stable_port,
        )
        assert stable.success, stable.error_message
        # Traffic to the canary straight to its port: this test is about the analysis.
        stop = time.monotonic() + 30

        def drive() -> None:
            while time.monotonic() < stop:
                try:
                    http_get(f"http://127.0.0.1:{canary_port}/predict", timeout=1.0)
                except OSError:
                    time.sleep(0.05)

        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        try:
            bad = orch.deploy_with_strategy(
                DeploymentConfig("m", "prod", version="v3e", canary_steps=[10, 100], **common),
                "canary",
                port=canary_port,
            )
        finally:
            stop = time.monotonic()
            driver.join(5)
        assert not bad.success and bad.rolled_back
        assert bad.metadata is not None
        gates = [s for s in bad.metadata.extra["steps"] if s["step"] == "gate"]
        assert gates[-1]["verdict"] == "failed" and "error rate" in gates[-1]["reason"]
        # Rates from PromQL are no counts per arm: the record says the judge was not used.
        notes = [s for s in bad.metadata.extra["steps"] if s["step"] == "judge"]
        assert notes and "sequential judge not used" in notes[-1]["reason"]
        assert orch.get_environment("prod")["current"]["version"] == "v1"
