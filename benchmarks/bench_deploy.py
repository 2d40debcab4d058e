"""Deployment speed and safety: blue-green switch time, rollback time, requests lost.

Real parts: nginx (NginxRouter), sample-service processes (ProcessTarget), a steady
keep-alive load of 300 requests/s on /predict through nginx (tests/_runtime.LoadGenerator).
Figures (median, min-max of RUNS runs):

- deploy start -> traffic switched (blue-green v(n) -> v(n+1), router change confirmed live);
- failed gate -> traffic back on stable: a version answering 30 % of /predict with 500
  fails its bake window (blue-green, all traffic) or its first canary step (10 %);
- requests lost (transport errors, 502/503/504) in each window, besides the 500s the bad
  version itself answered.

References from the same run: a sample-service process from start to healthy, and one
router change on its own (same backends, nginx reload confirmed).

Run: python benchmarks/bench_deploy.py [runs]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._runtime import LoadGenerator, sample_target, start_instance  # noqa: E402

from crackseg.utils.deployment.orchestration import (  # noqa: E402
    DeploymentConfig,
    DeploymentOrchestrator,
)
from crackseg.utils.deployment.rollout.routers.base import Backend, TrafficRouter  # noqa: E402
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter  # noqa: E402

RATE = 300.0
LOST = {0, 502, 503, 504}


class Timed(TrafficRouter):
    """The nginx router, remembering when each change was confirmed (wall and monotonic)."""

    def __init__(self, inner: NginxRouter) -> None:
        self.inner = inner
        self.applied: list[tuple[float, float, list[Backend]]] = []

    def apply(self, backends: list[Backend]) -> None:
        self.inner.apply(backends)
        self.applied.append((time.time(), time.monotonic(), list(backends)))

    def current(self) -> list[Backend]:
        return self.inner.current()

    @property
    def public_url(self) -> str | None:
        return self.inner.public_url


def cfg(version: str, **kw: Any) -> DeploymentConfig:
    base: dict[str, Any] = dict(
        version=version,
        check_interval=0.1,
        success_threshold=2,
        bake_seconds=1.0,
        metrics_path="/metrics",
        metrics_labels={"route": "/predict"},
        min_samples=20,
        keep_old_seconds=1.0,
        grace_period=5.0,
    )
    base.update(kw)
    return DeploymentConfig("crackseg-model", "bench", **base)


def lost(load: LoadGenerator, since: float, until: float) -> int:
    w = load.window(since, until)
    return sum(n for status, n in w.statuses.items() if status in LOST)


def fmt(values: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    if not values:
        return "n/a"
    v = [x * scale for x in values]
    return f"{statistics.median(v):,.0f} {unit} ({min(v):,.0f}-{max(v):,.0f})"


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    switch: list[float] = []
    switch_lost: list[int] = []
    rb_bg: list[float] = []
    rb_canary: list[float] = []
    rb_lost: list[int] = []
    bad_500: list[int] = []
    ref_start: list[float] = []
    ref_apply: list[float] = []
    bad = {f"bad{i}": ["--error-rate", "0.3"] for i in range(2 * runs)}
    with (
        sample_target(tmp, version_args=bad) as target,
        NginxRouter(workdir=tmp / "nginx", worker_shutdown_timeout="5s") as nginx,
    ):
        router = Timed(nginx)
        orch = DeploymentOrchestrator(router=router, target=target)
        try:
            for _ in range(3):
                t0 = time.monotonic()
                inst = start_instance(target, "ref")
                ref_start.append(time.monotonic() - t0)
                target.teardown(inst, 2.0)
            assert orch.deploy_with_strategy(cfg("v0"), "blue_green").success
            with LoadGenerator(nginx.public_url + "/predict", rate=RATE, max_duration=170) as load:
                load.wait_for_requests(200)
                for _ in range(3):
                    t0 = time.monotonic()
                    nginx.apply(nginx.current())
                    ref_apply.append(time.monotonic() - t0)
                for i in range(runs):
                    t0 = time.monotonic()
                    r = orch.deploy_with_strategy(cfg(f"v{i + 1}"), "blue_green")
                    assert r.success, r.error_message
                    switch.append(router.applied[-1][1] - t0)
                    time.sleep(1.5)  # past keep_old_seconds: the old slot is stopped too
                    switch_lost.append(lost(load, t0, time.monotonic()))
                for i in range(2 * runs):
                    strategy = "blue_green" if i % 2 == 0 else "canary"
                    t0 = time.monotonic()
                    r = orch.deploy_with_strategy(cfg(f"bad{i}", bake_seconds=3.0), strategy)
                    assert not r.success and r.rolled_back and r.metadata is not None
                    failed_at = next(
                        s["at"]
                        for s in r.metadata.extra["steps"]
                        if s["step"] == "gate" and s["verdict"] == "failed"
                    )
                    back = router.applied[-1][0] - failed_at
                    (rb_bg if strategy == "blue_green" else rb_canary).append(back)
                    time.sleep(0.5)
                    t1 = time.monotonic()
                    rb_lost.append(lost(load, t0, t1))
                    bad_500.append(load.window(t0, t1).statuses.get(500, 0))
                total = load.result
        finally:
            orch.close()

    print("## Deployments: blue-green switch and rollback (orchestrator + nginx)\n")
    print(f"Command: `.venv/bin/python benchmarks/bench_deploy.py {runs}`  ")
    print(
        f"Load: {RATE:.0f} req/s keep-alive on /predict through nginx; {total.total:,} requests, "
        f"{total.retries} retried once by the client. Median (min-max) of {runs} runs each.\n"
    )
    print("| figure | value | reference (same run) |")
    print("|---|---|---|")
    print(
        f"| blue-green: deploy start -> traffic switched | {fmt(switch)} | "
        f"process start -> healthy: {fmt(ref_start)}; one router change: {fmt(ref_apply)} |"
    )
    print(
        f"| blue-green: requests lost per deploy | {max(switch_lost)} max ({sum(switch_lost)} total) | target 0 |"
    )
    print(
        f"| failed bake gate -> traffic back on stable (blue-green) | {fmt(rb_bg)} | one router change: {fmt(ref_apply)} |"
    )
    print(f"| failed canary step (10 %) -> traffic back on stable | {fmt(rb_canary)} | |")
    print(f"| rollbacks: requests lost | {max(rb_lost)} max ({sum(rb_lost)} total) | target 0 |")
    print(
        f"| rollbacks: 500s answered by the bad version before rollback | "
        f"{statistics.median(bad_500):,.0f} median ({min(bad_500)}-{max(bad_500)}) | "
        f"harm bound: weight x error rate x detection time |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
