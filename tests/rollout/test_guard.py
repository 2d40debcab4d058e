"""Rollouts judged on the traffic nginx carries, guarded after promotion, losing no GET.

Real nginx, sample-service processes and steady keep-alive load through nginx; no metrics
URL unless a test says so: the router's own access log is what judges.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from crackseg.utils.deployment.orchestration import (
    DeploymentConfig,
    DeploymentOrchestrator,
    DeploymentResult,
)
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
from tests.support.prometheus import StartPrometheus
from tests.support.runtime import LoadGenerator, http_get, sample_target
from tests.support.wait import wait_until

RATE = 300.0
ERROR_RATE = 0.3


@dataclass
class Rig:
    orch: DeploymentOrchestrator
    router: NginxRouter
    target: ProcessTarget

    def load(self) -> LoadGenerator:
        return LoadGenerator(self.router.public_url + "/predict", rate=RATE, max_duration=40.0)

    def primaries(self) -> list[str]:
        return [b.label for b in self.router.current() if not b.backup]


def cfg(version: str, **kw: Any) -> DeploymentConfig:
    base: dict[str, Any] = dict(
        version=version,
        check_interval=0.1,
        success_threshold=2,
        bake_seconds=1.0,
        health_timeout=15.0,
        min_samples=20,
        grace_period=3.0,
        deploy_timeout=60.0,
        monitor_interval=0.2,
        guard_seconds=0,
    )
    base.update(kw)
    return DeploymentConfig("crackseg-model", "prod", **base)


@pytest.fixture
def rig(tmp_path: Path, nginx_router: NginxRouter) -> Iterator[Rig]:
    version_args = {"v3e": ["--error-rate", str(ERROR_RATE)]}
    router = nginx_router
    with (
        sample_target(tmp_path, version_args=version_args) as target,
        DeploymentOrchestrator(router=router, target=target) as orch,
    ):
        yield Rig(orch, router, target)


def _ok(result: DeploymentResult) -> None:
    assert result.success, result.error_message


def test_canary_without_metrics_is_rolled_back_on_the_routers_measurement(rig: Rig) -> None:
    _ok(rig.orch.deploy_with_strategy(cfg("v2"), "blue_green"))
    bake = 3.0
    with rig.load() as load:
        load.wait_for_requests(150)
        t0 = time.monotonic()
        bad = rig.orch.deploy_with_strategy(cfg("v3e", bake_seconds=bake), "canary")
        t1 = time.monotonic()
        load.wait_for_requests(100)
    assert not bad.success and bad.rolled_back, bad.error_message
    assert bad.metadata is not None
    gates = [s for s in bad.metadata.extra["steps"] if s["step"] == "gate"]
    assert gates[-1]["gate"] == "canary 10%" and gates[-1]["verdict"] == "failed"
    assert gates[-1]["source"] == "router" and "error rate" in gates[-1]["reason"]
    # Users' 500s stay within weight x error rate x detection time (+ a second of margin).
    allowed = math.ceil(RATE * 0.10 * ERROR_RATE * (t1 - t0 + 1.0))
    assert 0 < load.result.failed <= allowed, (load.result.failed, allowed)
    assert rig.primaries() == ["v2"]
    assert set(load.window(since=t1).by_version) == {"v2"}


def test_a_deploy_starts_monitoring_and_without_traffic_says_probes_only(rig: Rig) -> None:
    assert not rig.orch.health_monitor.monitoring_active
    got: list[str] = []
    result = rig.orch.deploy_with_strategy(cfg("v1", monitor_interval=0.5), "blue_green")
    _ok(result)
    assert rig.orch.health_monitor.monitoring_active
    t0 = time.monotonic()
    wait_until(
        lambda: (
            rig.orch.get_deployment_health_status(result.deployment_id)["health_status"]
            == "healthy"
        ),
        5.0,
        "healthy status",
        interval=0.02,
    )
    got.append(f"{time.monotonic() - t0:.2f}")
    assert time.monotonic() - t0 < 0.5 + 1.0, got
    # No request went through nginx during the bake: judged on probes, and said so.
    meta = result.metadata
    assert meta is not None and "judged on health probes only" in meta.extra.get(
        "judged_on_probes_only", ""
    )
    assert "judged on health probes only" in (meta.state_history[-1].reason or "")
    rig.orch.stop_health_monitoring()
    assert not rig.orch.health_monitor.monitoring_active


def test_sigkill_of_the_new_version_during_bake_loses_no_get(rig: Rig) -> None:
    _ok(rig.orch.deploy_with_strategy(cfg("v1"), "blue_green"))
    out: list[DeploymentResult] = []
    config = cfg("v2", deployment_id="dep-kill", bake_seconds=30.0)
    with rig.load() as load:
        load.wait_for_requests(100)
        th = threading.Thread(
            target=lambda: out.append(rig.orch.deploy_with_strategy(config, "blue_green"))
        )
        th.start()
        meta = wait_until(
            lambda: (
                (m := rig.orch.get_deployment_status("dep-kill")) and "switched_at" in m.extra and m
            ),
            20.0,
            "the switch to v2",
            interval=0.01,
        )
        load.wait_for_requests(60)  # v2 serves for a while
        os.kill(meta.extra["instances"][0]["pid"], signal.SIGKILL)
        th.join(20)
        assert not th.is_alive(), "deployment hangs after its process died"
        load.wait_for_requests(100)
    assert not out[0].success and out[0].rolled_back
    assert load.result.by_version["v2"] > 0
    assert load.result.failed == 0, load.result.failures
    assert rig.primaries() == ["v1"]


def test_post_promotion_failure_rolls_back_by_itself_losing_no_get(rig: Rig) -> None:
    _ok(rig.orch.deploy_with_strategy(cfg("v1"), "blue_green"))
    interval, threshold = 0.2, 2
    # The guard is under test, not the bake: a 1 s bake cannot show safety, so go on.
    config = cfg(
        "v2",
        guard_seconds=30,
        monitor_interval=interval,
        failure_threshold=threshold,
        on_inconclusive="proceed",
    )
    with rig.load() as load:
        load.wait_for_requests(100)
        result = rig.orch.deploy_with_strategy(config, "blue_green")
        _ok(result)
        meta = result.metadata
        assert meta is not None and meta.extra["guard"]["state"] == "watching"
        load.wait_for_requests(60)
        v2 = meta.extra["instances"][0]
        failing = time.monotonic()
        assert (
            http_get(f"http://{v2['address']}/admin/fail?mode=unhealthy", method="POST")[0] == 200
        )
        wait_until(lambda: rig.primaries() == ["v1"], 10.0, "traffic back on v1", interval=0.01)
        back = time.monotonic()
        load.wait_for_requests(100)
    # failure_threshold x interval for the monitor, a guard poll, one router change.
    assert back - failing < threshold * interval + 3.0
    assert load.result.failed == 0, load.result.failures
    assert set(load.window(since=back).by_version) == {"v1"}
    record = wait_until(
        lambda: (
            (m := rig.orch.get_deployment_status(result.deployment_id))
            and m.state == "rolled_back"
            and m
        ),
        10.0,
        "the rollback to complete",
    )
    assert (record.rollback_reason or "").startswith("post-promotion: ")
    assert rig.orch.get_environment("prod")["current"]["version"] == "v1"
    assert not psutil.pid_exists(v2["pid"]) or psutil.Process(v2["pid"]).status() == "zombie"
    # Monitoring continues on the restored version.
    v1_id = rig.orch.get_environment("prod")["current"]["deployment_id"]
    assert rig.orch.get_deployment_health_status(v1_id)["health_status"] in ("healthy", "unknown")


def test_prometheus_stopped_mid_canary_is_an_error_then_a_rollback(
    rig: Rig, prometheus: StartPrometheus
) -> None:
    base = prometheus(["127.0.0.1:9"], job="none", interval="1s")
    queries = {"error_rate_percent": "vector(0)", "requests": "vector(100)"}
    _ok(rig.orch.deploy_with_strategy(cfg("v1"), "blue_green"))
    port = int(base.rsplit(":", 1)[1])
    server = next(
        p
        for p in psutil.process_iter(["name"])
        if "prometheus" in (p.info["name"] or "")
        and any(c.laddr.port == port for c in p.net_connections("tcp"))
    )
    out: list[DeploymentResult] = []
    config = cfg(
        "v2",
        deployment_id="dep-prom",
        canary_steps=[25, 100],
        bake_seconds=30.0,
        prometheus_url=base,
        prometheus_queries=queries,
    )
    th = threading.Thread(
        target=lambda: out.append(rig.orch.deploy_with_strategy(config, "canary"))
    )
    th.start()
    wait_until(
        lambda: any(
            s["step"] == "route" for s in rig.orch.get_deployment_status("dep-prom").extra["steps"]
        ),
        20.0,
        "the canary step",
    )
    server.terminate()
    server.wait(10)
    stopped = time.monotonic()
    th.join(30)
    assert not th.is_alive()
    result = out[0]
    assert not result.success and result.rolled_back
    assert time.monotonic() - stopped < 10.0
    reason = result.error_message or ""
    assert "error" in reason and "prometheus query" in reason and "4 measurement errors" in reason
    gates = [s for s in result.metadata.extra["steps"] if s["step"] == "gate"]  # type: ignore[union-attr]
    assert gates[-1]["verdict"] == "error"
    assert rig.primaries() == ["v1"]


def test_post_promotion_errors_on_real_traffic_roll_back_on_the_routers_measurement(
    rig: Rig,
) -> None:
    _ok(rig.orch.deploy_with_strategy(cfg("v1"), "blue_green"))
    # Health stays green: only the traffic nginx carries shows the fault.
    # The guard is under test, not the bake: a 1 s bake cannot show safety, so go on.
    config = cfg("v2", guard_seconds=30, monitor_interval=5.0, on_inconclusive="proceed")
    with rig.load() as load:
        load.wait_for_requests(100)
        result = rig.orch.deploy_with_strategy(config, "blue_green")
        _ok(result)
        assert result.metadata is not None
        v2 = result.metadata.extra["instances"][0]["address"]
        url = f"http://{v2}/admin/fail?mode=errors&error_rate=0.5"
        assert http_get(url, method="POST")[0] == 200
        failing = time.monotonic()
        wait_until(lambda: rig.primaries() == ["v1"], 10.0, "traffic back on v1", interval=0.01)
        back = time.monotonic()
        load.wait_for_requests(60)
    assert back - failing < 5.0
    record = wait_until(
        lambda: (
            (m := rig.orch.get_deployment_status(result.deployment_id))
            and m.state == "rolled_back"
            and m
        ),
        10.0,
        "the rollback to complete",
    )
    # The rollout's sequential judge, one-sample against v1's figures from before the switch.
    assert (record.rollback_reason or "").startswith("post-promotion: router: canary errors")
    assert record.extra["guard"]["evidence"]["evidence"]["mode"] == "one-sample"
    # Only the bad answers users got before the rollback: 500s, no transport errors.
    assert set(load.result.statuses) <= {200, 500}
    assert set(load.window(since=back).by_version) == {"v1"}
