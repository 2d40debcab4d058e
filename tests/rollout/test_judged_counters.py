"""The sequential judge fed from the instances' Prometheus counters (``metrics_path``):
real nginx routing, real sample-service processes exposing ``http_requests_total`` and a
latency histogram, a router that does not log requests (so the counters are the only
measurement of traffic); and a stdlib metrics server whose counter goes down mid-window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.orchestration import (
    DeploymentConfig,
    DeploymentOrchestrator,
    DeploymentResult,
)
from crackseg.utils.deployment.rollout.counters import CounterReader, CounterResetError
from crackseg.utils.deployment.rollout.judge import JudgeConfig, JudgeVerdict
from crackseg.utils.deployment.rollout.judging import Judging
from crackseg.utils.deployment.rollout.routers.base import Backend, TrafficRouter
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from tests.support.metrics_standins import MetricsStandIn, metrics_standins, metrics_text
from tests.support.runtime import LoadGenerator, sample_target

# A latency the histogram resolves (the service alone answers within its first bucket).
VERSIONS = {
    "clean": ["--latency-ms", "20"],
    "good": ["--latency-ms", "20"],
    "bad30": ["--latency-ms", "20", "--error-rate", "0.3"],
}
RATE = 20.0


class UnloggedRouter(TrafficRouter):
    """nginx switching the traffic, without its request log: the judge must count from
    the instances' own metrics."""

    def __init__(self, inner: NginxRouter) -> None:
        self.inner = inner

    def apply(self, backends: list[Backend]) -> None:
        self.inner.apply(backends)

    def current(self) -> list[Backend]:
        return self.inner.current()

    @property
    def public_url(self) -> str | None:
        return self.inner.public_url

    @property
    def supports_backup(self) -> bool:
        return True


@pytest.fixture
def rig(tmp_path: Path, nginx_router: NginxRouter) -> Iterator[tuple[DeploymentOrchestrator, str]]:
    with (
        sample_target(tmp_path, version_args=VERSIONS) as target,
        DeploymentOrchestrator(router=UnloggedRouter(nginx_router), target=target) as orch,
    ):
        yield orch, nginx_router.public_url


def cfg(version: str, **kw: Any) -> DeploymentConfig:
    base: dict[str, Any] = dict(
        version=version,
        check_interval=0.5,
        success_threshold=1,
        health_timeout=15.0,
        grace_period=2.0,
        deploy_timeout=180.0,
        guard_seconds=0,
        canary_steps=[50, 100],
        bake_seconds=5.0,
        analysis_timeout=60.0,
        metrics_path="/metrics",
        metrics_labels={"route": "/predict"},
    )
    base.update(kw)
    return DeploymentConfig("crackseg-model", "prod", **base)


def _rollout(
    rig: tuple[DeploymentOrchestrator, str], stable: str, version: str, **kw: Any
) -> DeploymentResult:
    orch, url = rig
    first = orch.deploy_with_strategy(cfg(stable), "blue_green")
    assert first.success, first.error_message
    with LoadGenerator(url + "/predict", rate=RATE, concurrency=2, max_duration=170.0) as users:
        # Enough stable requests in its histogram to freeze p50, p90 and p99 buckets.
        users.wait_for_requests(150, timeout=150 / RATE + 20.0)
        return orch.deploy_with_strategy(cfg(version, **kw), "canary")


def _gates(result: DeploymentResult) -> list[dict[str, Any]]:
    assert result.metadata is not None
    return [s for s in result.metadata.extra["steps"] if s["step"] == "gate"]


def test_a_canary_failing_30_percent_counted_from_metrics_is_rolled_back(rig: Any) -> None:
    bad = _rollout(rig, "clean", "bad30", analysis_timeout=20.0)
    assert not bad.success and bad.rolled_back, bad.error_message
    assert bad.metadata is not None
    ev = bad.metadata.extra["evidence"]
    assert ev["verdict"] == "failed" and ev["judge_verdict"] == "failed", ev["reason"]
    canary, stable = ev["evidence"]["canary"], ev["evidence"]["stable"]
    assert canary["errors"] > 0 and stable["errors"] == 0 and stable["requests"] > 0
    assert ev["evidence"]["mode"] == "two-sample"
    assert len(ev["baseline"]["thresholds_ms"]) >= 1  # frozen from the stable's buckets
    assert _gates(bad)[-1]["source"] == "metrics"


def test_a_healthy_canary_counted_from_metrics_is_promoted(rig: Any) -> None:
    good = _rollout(rig, "clean", "good")
    assert good.success, good.error_message
    assert good.metadata is not None
    ev = good.metadata.extra["evidence"]
    assert ev["verdict"] == "passed", ev["reason"]
    assert ev["evidence"]["canary"]["requests"] > 0
    assert all(g["source"] == "metrics" for g in _gates(good) if g["gate"] != "health")


@pytest.fixture
def servers() -> Iterator[list[MetricsStandIn]]:
    with metrics_standins(2) as out:
        yield out


def test_counts_per_arm_from_counter_increments_and_a_reset_is_an_error(
    servers: list[MetricsStandIn],
) -> None:
    stable, canary = servers
    stable.text = metrics_text(980, 20)
    canary.text = metrics_text(0, 0)
    urls = {f"s:{s.server_port}": f"http://127.0.0.1:{s.server_port}/metrics" for s in servers}
    s_addr, c_addr = list(urls)
    reader = CounterReader(urls, label_filter={"route": "/predict"}, timeout=2.0)
    judging = Judging.for_counters(reader, [s_addr], JudgeConfig())
    # The stable's buckets freeze thresholds at bucket bounds: the lower edges of the
    # buckets holding its p90 (10-100 ms) and p99 (100 ms-1 s); none for p50 (first bucket).
    assert judging.baseline.thresholds_ms == (10.0, 100.0)
    # The canary's: the smallest bound at or above each plus its margin (12 ms, 110 ms).
    assert judging.baseline.canary_thresholds_ms == (100.0, 1000.0)
    assert judging.judge.canary_thresholds_ms == (100.0, 1000.0)
    assert judging.baseline.counts.requests == 1000 and judging.baseline.counts.errors == 20
    judging.start_window([c_addr], [s_addr])
    judging.look()  # the canary's starting point
    stable.text = metrics_text(1080, 20)
    canary.text = metrics_text(70, 30)
    judging.look()
    window = judging.view()["window"]["user"]
    assert window["canary"]["requests"] == 100 and window["canary"]["errors"] == 30
    assert window["stable"]["requests"] == 100 and window["stable"]["errors"] == 0
    # 100 new requests each, 50 at or under 10 ms, 95 under 100 ms, all under 1 s: the
    # stable counted above 10 and 100 ms, the canary above 100 ms and 1 s.
    assert window["stable"]["slow"] == [50, 5]
    assert window["canary"]["slow"] == [5, 0]
    # The canary's process restarted: its counters went down. The measurement is broken,
    # at this look and every later one: never judged on what is left.
    canary.text = metrics_text(5, 0)
    with pytest.raises(CounterResetError, match="went down"):
        judging.look()
    canary.text = metrics_text(50, 0)
    with pytest.raises(CounterResetError):
        judging.look()


def test_a_margin_past_the_last_bucket_counts_no_canary_request_and_says_so(
    servers: list[MetricsStandIn],
) -> None:
    stable, canary = servers
    stable.text = metrics_text(1000, 0)
    urls = {f"s:{s.server_port}": f"http://127.0.0.1:{s.server_port}/metrics" for s in servers}
    s_addr, c_addr = list(urls)
    wide = JudgeConfig(latency_margin_ms=950.0)  # 100 ms + 950 is past the 1 s bucket
    judging = Judging.for_counters(CounterReader(urls), [s_addr], wide)
    assert judging.baseline.canary_thresholds_ms == (1000.0, float("inf"))
    note = judging.baseline.note
    assert "cannot resolve the canary's latency margin above 100 ms" in note, note
    assert judging.view()["baseline"]["canary_thresholds_ms"] == [1000.0, None]
    judging.start_window([c_addr], [s_addr])
    judging.look()
    canary.text = metrics_text(100, 0)
    stable.text = metrics_text(1100, 0)
    j = judging.look()
    assert judging.view()["window"]["user"]["canary"]["slow"] == [0, 0]
    # Lenient, as the null needs: nothing to show there, and the evidence says which.
    assert j.to_dict()["evidence"]["canary_thresholds_ms"] == [1000.0, None]
    assert not any("latency" in m for m in j.evidence.missing)


def test_the_post_promotion_judge_counts_the_promoted_version_from_its_own_reads(
    servers: list[MetricsStandIn],
) -> None:
    stable, canary = servers
    stable.text = metrics_text(1000, 0)
    canary.text = metrics_text(400, 0)
    urls = {f"s:{s.server_port}": f"http://127.0.0.1:{s.server_port}/metrics" for s in servers}
    s_addr, c_addr = list(urls)
    judging = Judging.for_counters(CounterReader(urls), [s_addr], JudgeConfig())
    guard = judging.after([c_addr], 0.0)
    guard.look()  # its starting point: what the canary served before is not counted again
    canary.text = metrics_text(450, 50)
    j = guard.look()
    # Half its requests failing against a stable that failed none of 1000: harm, shown.
    assert j.evidence.mode == "one-sample" and j.verdict is JudgeVerdict.FAILED, j.reason
    window = guard.view()["window"]["user"]
    assert window["canary"] == {**window["canary"], "requests": 100, "errors": 50}
    assert window["stable"]["requests"] == 0
