"""Canary rollouts judged by the sequential judge on counts from a real Prometheus server:
real nginx routing users' requests, real sample-service processes on ports chosen ahead
(Prometheus scrapes them from the start, every second), the counter keys of
``prometheus_queries``. A canary failing 30 % against a clean stable is rolled back, a
healthy one promoted, each with ``prometheus`` as the source of its evidence."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.orchestration import (
    DeploymentConfig,
    DeploymentOrchestrator,
    DeploymentResult,
)
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from tests.support.prometheus import StartPrometheus
from tests.support.runtime import LoadGenerator, sample_target
from tests.support.wait import free_port

# A latency the histogram resolves (the service alone answers within its first bucket).
VERSIONS = {
    "clean": ["--latency-ms", "20"],
    "good": ["--latency-ms", "20"],
    "bad30": ["--latency-ms", "20", "--error-rate", "0.3"],
}
RATE = 40.0
PREDICT = 'route="/predict"'
QUERIES = {
    "requests": f'sum(http_requests_total{{instance="{{instance}}",{PREDICT}}})',
    "errors": f'sum(http_requests_total{{instance="{{instance}}",{PREDICT},code=~"5.."}})',
    "duration_bucket": (
        f'sum by (le) (http_request_duration_seconds_bucket{{instance="{{instance}}",{PREDICT}}})'
    ),
}


@dataclass
class Rig:
    orch: DeploymentOrchestrator
    url: str
    prometheus: str
    ports: tuple[int, int]  # the stable's, the canary's


@pytest.fixture
def rig(tmp_path: Path, nginx_router: NginxRouter, prometheus: StartPrometheus) -> Iterator[Rig]:
    ports = (free_port(), free_port())
    base = prometheus([f"127.0.0.1:{p}" for p in ports], job="sample", interval="1s")
    with (
        sample_target(tmp_path, version_args=VERSIONS) as target,
        DeploymentOrchestrator(router=nginx_router, target=target) as orch,
    ):
        yield Rig(orch, nginx_router.public_url, base, ports)


def cfg(rig: Rig, version: str, **kw: Any) -> DeploymentConfig:
    base: dict[str, Any] = dict(
        version=version,
        check_interval=0.5,
        success_threshold=1,
        health_timeout=15.0,
        grace_period=2.0,
        deploy_timeout=120.0,
        guard_seconds=0,
        canary_steps=[50, 100],
        bake_seconds=5.0,
        analysis_timeout=40.0,
        prometheus_url=rig.prometheus,
        prometheus_queries=QUERIES,
        # Scraped every second; the bound on "not scraped yet" leaves room for a busy machine.
        prometheus_scrape_interval=2.0,
    )
    base.update(kw)
    return DeploymentConfig("crackseg-model", "prod", **base)


def _rollout(rig: Rig, stable: str, version: str, **kw: Any) -> DeploymentResult:
    first = rig.orch.deploy_with_strategy(cfg(rig, stable), "blue_green", port=rig.ports[0])
    assert first.success, first.error_message
    with LoadGenerator(rig.url + "/predict", rate=RATE, concurrency=4, max_duration=110.0) as users:
        # Enough stable requests in its histogram to freeze p50, p90 and p99 buckets.
        users.wait_for_requests(200, timeout=200 / RATE + 20.0)
        return rig.orch.deploy_with_strategy(cfg(rig, version, **kw), "canary", port=rig.ports[1])


def _steps(result: DeploymentResult, step: str) -> list[dict[str, Any]]:
    assert result.metadata is not None
    return [s for s in result.metadata.extra["steps"] if s["step"] == step]


def test_a_canary_failing_30_percent_counted_by_prometheus_is_rolled_back(rig: Rig) -> None:
    bad = _rollout(rig, "clean", "bad30", analysis_timeout=20.0)
    assert not bad.success and bad.rolled_back, bad.error_message
    assert bad.metadata is not None
    ev = bad.metadata.extra["evidence"]
    assert ev["verdict"] == "failed" and ev["judge_verdict"] == "failed", ev["reason"]
    assert ev["source"] == "prometheus"
    canary, stable = ev["evidence"]["canary"], ev["evidence"]["stable"]
    assert canary["errors"] > 0 and stable["errors"] == 0 and stable["requests"] > 0
    assert ev["evidence"]["mode"] == "two-sample"
    assert len(ev["baseline"]["thresholds_ms"]) >= 1  # frozen from the stable's buckets
    assert _steps(bad, "gate")[-1]["source"] == "prometheus"
    assert not _steps(bad, "judge")  # no note that the judge was not used
    assert rig.orch.get_environment("prod")["current"]["version"] == "clean"


def test_a_healthy_canary_counted_by_prometheus_is_promoted(rig: Rig) -> None:
    good = _rollout(rig, "clean", "good")
    assert good.success, good.error_message
    assert good.metadata is not None
    ev = good.metadata.extra["evidence"]
    assert ev["verdict"] == "passed" and ev["source"] == "prometheus", ev["reason"]
    assert ev["evidence"]["canary"]["requests"] > 0
    gates = [g for g in _steps(good, "gate") if g["gate"] != "health"]
    assert gates and all(g["source"] == "prometheus" for g in gates)
