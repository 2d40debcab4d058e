"""Rollouts switching real traffic: nginx, sample-service processes, steady bounded load."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.orchestration import (
    DeploymentConfig,
    DeploymentOrchestrator,
    DeploymentResult,
    DeploymentStrategy,
)
from crackseg.utils.deployment.rollout.routers.base import Backend, TrafficRouter, TrafficStats
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
from tests.support.runtime import LoadGenerator, http_get, sample_target

RATE = 300.0
ERROR_RATE = 0.3


class RecordingRouter(TrafficRouter):
    """The nginx router, remembering when each change started and was confirmed live."""

    def __init__(self, inner: NginxRouter) -> None:
        self.inner = inner
        self.applied: list[tuple[float, float, list[Backend]]] = []

    def apply(self, backends: list[Backend]) -> None:
        t0 = time.monotonic()
        self.inner.apply(backends)
        self.applied.append((t0, time.monotonic(), list(backends)))

    def current(self) -> list[Backend]:
        return self.inner.current()

    @property
    def public_url(self) -> str | None:
        return self.inner.public_url

    @property
    def measures_traffic(self) -> bool:
        return True

    @property
    def supports_backup(self) -> bool:
        return True

    def measure(self, addresses: Sequence[str], since: float) -> TrafficStats:
        return self.inner.measure(addresses, since)

    def labels(self) -> list[list[str]]:
        """The primary backends' labels of each change (backups get no share of traffic)."""
        return [[b.label for b in backends if not b.backup] for _, _, backends in self.applied]


@dataclass
class Rig:
    orch: DeploymentOrchestrator
    router: RecordingRouter
    target: ProcessTarget
    url: str

    def load(self, **kw: Any) -> LoadGenerator:
        return LoadGenerator(self.url + "/predict", rate=RATE, max_duration=40.0, **kw)


def cfg(version: str, **kw: Any) -> DeploymentConfig:
    base: dict[str, Any] = dict(
        version=version,
        check_interval=0.1,
        success_threshold=2,
        bake_seconds=1.5,
        health_timeout=15.0,
        metrics_path="/metrics",
        metrics_labels={"route": "/predict"},
        min_samples=20,
        keep_old_seconds=2.0,
        grace_period=3.0,
        deploy_timeout=60.0,
    )
    base.update(kw)
    return DeploymentConfig("crackseg-model", "prod", **base)


@pytest.fixture
def rig(tmp_path: Path, nginx_router: NginxRouter) -> Iterator[Rig]:
    version_args = {"v3": ["--fail-health"], "v3e": ["--error-rate", str(ERROR_RATE)]}
    with sample_target(tmp_path, version_args=version_args) as target:
        router = RecordingRouter(nginx_router)
        orch = DeploymentOrchestrator(router=router, target=target)
        try:
            yield Rig(orch, router, target, nginx_router.public_url)
        finally:
            orch.close()


def _ok(result: DeploymentResult) -> None:
    assert result.success, result.error_message


def test_blue_green_switches_all_traffic_with_zero_failures_and_refuses_unhealthy_v3(
    rig: Rig,
) -> None:
    _ok(rig.orch.deploy_with_strategy(cfg("v1"), DeploymentStrategy.BLUE_GREEN))
    with rig.load() as load:
        load.wait_for_requests(150)
        _ok(rig.orch.deploy_with_strategy(cfg("v2"), DeploymentStrategy.BLUE_GREEN))
        switched = rig.router.applied[-1][1]
        load.wait_for_requests(150)
        v2_done = time.monotonic()
        bad = rig.orch.deploy_with_strategy(
            cfg("v3", health_timeout=2.0), DeploymentStrategy.BLUE_GREEN
        )
        load.wait_for_requests(150)
    res = load.result
    assert res.failed == 0, (res.failures, rig.router.applied, v2_done)
    after = load.window(since=switched)
    assert after.total > 100 and set(after.by_version) == {"v2"}
    # v3 never passed its health gate: never routed, no answer from it, v2 still serves.
    assert not bad.success and bad.rolled_back and "health" in (bad.error_message or "")
    assert all("v3" not in labels for labels in rig.router.labels())
    assert "v3" not in res.by_version
    assert set(load.window(since=v2_done).by_version) == {"v2"}
    assert rig.orch.get_environment("prod")["current"]["version"] == "v2"


def test_canary_steps_split_traffic_by_weight(rig: Rig) -> None:
    _ok(rig.orch.deploy_with_strategy(cfg("v1"), DeploymentStrategy.BLUE_GREEN))
    n_before = len(rig.router.applied)
    with rig.load() as load:
        load.wait_for_requests(150)
        # The judge counting from /metrics passes a step only on evidence of safety: at
        # 10 % of 300 req/s that takes some 400 canary requests, more than one bake.
        v2 = cfg("v2", canary_steps=[10, 50, 100], analysis_timeout=25.0)
        _ok(rig.orch.deploy_with_strategy(v2, "canary"))
        load.wait_for_requests(150)
    steps = rig.router.applied[n_before : n_before + 3]
    assert [labels for labels in rig.router.labels()[n_before : n_before + 3]] == [
        ["v1", "v2"],
        ["v1", "v2"],
        ["v2"],
    ]
    for (_, live, backends), nxt in zip(steps, [*steps[1:], None], strict=True):
        weights = {b.label: b.weight for b in backends if not b.backup}
        expected = 100.0 * weights["v2"] / sum(weights.values())
        window = load.window(since=live, until=nxt[0] if nxt else None)
        assert window.total > 100
        assert abs(window.share("v2") - expected) <= 5.0, (expected, window.by_version)
    assert load.result.failed == 0, load.result.failures


def test_canary_analysis_catches_errors_and_rolls_back(rig: Rig) -> None:
    _ok(rig.orch.deploy_with_strategy(cfg("v2"), DeploymentStrategy.BLUE_GREEN))
    bake = 3.0
    with rig.load() as load:
        load.wait_for_requests(150)
        t0 = time.monotonic()
        bad = rig.orch.deploy_with_strategy(cfg("v3e", bake_seconds=bake), "canary")
        t1 = time.monotonic()
        load.wait_for_requests(150)
    assert not bad.success and bad.rolled_back
    assert bad.metadata is not None and "error rate" in (bad.metadata.rollback_reason or "")
    # Caught at the first (10 %) step: it never got more.
    assert [labels for labels in rig.router.labels()][-2:] == [["v2", "v3e"], ["v2"]]
    first = 10 / 100
    allowed = math.ceil(RATE * first * ERROR_RATE * (bake + 1.0))
    res = load.result
    assert 0 < res.failed <= allowed, (res.failed, allowed, res.failures)
    assert set(res.statuses) <= {200, 500}
    assert t1 - t0 < bake + 10
    assert set(load.window(since=t1).by_version) == {"v2"}
    assert rig.orch.get_environment("prod")["current"]["version"] == "v2"


def test_rolling_keeps_enough_healthy_replicas(rig: Rig) -> None:
    n, unavailable = 4, 1
    rolling = dict(replicas=n, max_surge=1, max_unavailable=unavailable, bake_seconds=0.5)
    _ok(rig.orch.deploy_with_strategy(cfg("v1", **rolling), DeploymentStrategy.ROLLING))
    assert len(rig.router.current()) == n
    low: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            before = {b.address for b in rig.router.current()}
            healthy = set()
            for address in before:
                try:
                    if http_get(f"http://{address}/health", timeout=1.0)[0] == 200:
                        healthy.add(address)
                except OSError:
                    pass
            # Count only backends routed before and after the probes: one retired
            # between the two reads was already out of the router when it stopped.
            still = {b.address for b in rig.router.current()}
            low.append(len(healthy | (before - still)))
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    with rig.load() as load:
        load.wait_for_requests(100)
        watcher.start()
        result = rig.orch.deploy_with_strategy(cfg("v2", **rolling), DeploymentStrategy.ROLLING)
        stop.set()
        watcher.join(5)
        load.wait_for_requests(100)
    _ok(result)
    assert len(low) > 10 and min(low) >= n - unavailable, low
    assert sorted(b.label for b in rig.router.current()) == ["v2"] * n
    assert len([i for i in rig.target.instances() if "-v1-" in i]) == 0
    assert load.result.failed == 0, load.result.failures


def test_killing_the_new_version_mid_deploy_rolls_back(rig: Rig) -> None:
    _ok(rig.orch.deploy_with_strategy(cfg("v1"), DeploymentStrategy.BLUE_GREEN))
    out: list[DeploymentResult] = []
    config = cfg("v2", deployment_id="dep-kill", bake_seconds=30.0)
    with rig.load() as load:
        load.wait_for_requests(100)
        th = threading.Thread(
            target=lambda: out.append(rig.orch.deploy_with_strategy(config, "blue_green"))
        )
        th.start()
        deadline = time.monotonic() + 20
        while True:
            meta = rig.orch.get_deployment_status("dep-kill")
            if meta is not None and "switched_at" in meta.extra:
                break
            assert time.monotonic() < deadline and th.is_alive(), "never switched to v2"
            time.sleep(0.02)
        pid = meta.extra["instances"][0]["pid"]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        th.join(20)
        assert not th.is_alive(), "deployment hangs after its process died"
        recovered = time.monotonic()
        load.wait_for_requests(100)
    result = out[0]
    assert not result.success and result.rolled_back
    assert "process" in (result.error_message or "") or "health" in (result.error_message or "")
    assert recovered - killed < 10.0
    assert [b.label for b in rig.router.current()] == ["v1"]
    assert set(load.window(since=recovered).by_version) == {"v1"}
    # Only requests in flight between the kill and the switch back may fail.
    assert load.result.failed <= RATE * (recovered - killed) + 10
