"""Deployment speed and safety: blue-green switch time, rollback time, requests lost.

Real parts: nginx (NginxRouter), sample-service processes (ProcessTarget), a steady
keep-alive load of 300 requests/s on /predict through nginx (tests/support/runtime.LoadGenerator).
Figures (median, min-max of RUNS runs):

- deploy start -> traffic switched (blue-green v(n) -> v(n+1), router change confirmed live);
- failed gate -> traffic back on stable: a version answering 30 % of /predict with 500
  fails its bake window (blue-green, all traffic) or its first canary step (10 %);
- requests lost (transport errors, 502/503/504) in each window, besides the 500s the bad
  version itself answered.

References from the same run: a sample-service process from start to healthy, and one
router change on its own (same backends, nginx reload confirmed).

Then, judged on nginx's own access log (no metrics URL): a canary of the 30 %-failing
version caught at its first step; a promoted version whose /health starts failing, rolled
back by the post-promotion guard; a new version SIGKILLed during its bake (the previous one
is its nginx backup); a recreate (its outage by design); and the CPU cost of reading the
access log, per 1,000 lines.

Run: python benchmarks/bench_deploy.py [runs]
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.runtime import (  # noqa: E402
    LoadGenerator,
    http_get,
    sample_target,
    start_instance,
)

from crackseg.utils.deployment.orchestration import (  # noqa: E402
    DeploymentConfig,
    DeploymentOrchestrator,
)
from crackseg.utils.deployment.rollout.routers.base import (  # noqa: E402
    Backend,
    TrafficRouter,
    TrafficStats,
)
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter  # noqa: E402
from crackseg.utils.deployment.rollout.routers.nginx_log import AccessLogReader  # noqa: E402

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

    @property
    def measures_traffic(self) -> bool:
        return True

    @property
    def supports_backup(self) -> bool:
        return True

    def measure(self, addresses: Any, since: float) -> TrafficStats:
        return self.inner.measure(addresses, since)


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
        guard_seconds=0,
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
    guarded(runs)
    return 0


def wait_for(fn: Any, timeout: float = 20.0) -> float:
    """Poll ``fn`` every 5 ms; the monotonic time it first held (AssertionError on time-out)."""
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)
    return time.monotonic()


def deploy_into(orch: Any, config: DeploymentConfig, strategy: str, out: list[Any]) -> None:
    out.append(orch.deploy_with_strategy(config, strategy))


def log_cpu_per_1000_lines() -> float:
    """CPU seconds to read and account 1,000 access-log lines (two backends, retries mixed in)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-log-"))
    log = tmp / "access.log"
    now = time.time()
    n = 200_000
    with log.open("w") as f:
        for i in range(n):
            if i % 10 == 0:
                f.write(f"{now:.3f}|127.0.0.1:8001, 127.0.0.1:8002|502, 200|0.001, 0.002|200\n")
            else:
                f.write(f"{now:.3f}|127.0.0.1:800{1 + i % 2}|200|0.002|200\n")
    reader = AccessLogReader(log)
    t0 = time.process_time()
    reader.poll()
    cpu = time.process_time() - t0
    reader.close()
    return cpu / (n / 1000)


def guarded(runs: int) -> None:
    """Detection and rollback judged on nginx's access log; requests lost (target 0 GETs)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-guard-"))
    canary_detect: list[float] = []
    canary_back: list[float] = []
    canary_lost: list[int] = []
    guard_detect: list[float] = []
    guard_lost: list[int] = []
    kill_back: list[float] = []
    kill_lost: list[int] = []
    recreate_lost: list[int] = []
    bad = {f"bad{i}": ["--error-rate", "0.3"] for i in range(runs)}
    plain = dict(metrics_path=None, metrics_labels={}, keep_old_seconds=None)
    n = 0
    with (
        sample_target(tmp, version_args=bad) as target,
        NginxRouter(workdir=tmp / "nginx", worker_shutdown_timeout="5s") as nginx,
    ):
        router = Timed(nginx)
        orch = DeploymentOrchestrator(router=router, target=target)

        def primaries() -> list[str]:
            return [b.label for b in nginx.current() if not b.backup]

        try:
            assert orch.deploy_with_strategy(cfg("g0", **plain), "blue_green").success
            with LoadGenerator(nginx.public_url + "/predict", rate=RATE, max_duration=170) as load:
                load.wait_for_requests(200)
                for i in range(runs):
                    t0 = time.monotonic()
                    r = orch.deploy_with_strategy(
                        cfg(f"bad{i}", bake_seconds=3.0, **plain), "canary"
                    )
                    assert not r.success and r.rolled_back and r.metadata is not None
                    failed = next(
                        s for s in r.metadata.extra["steps"] if s.get("verdict") == "failed"
                    )
                    assert failed["source"] == "router", failed
                    route = next(s for s in r.metadata.extra["steps"] if s["step"] == "route")
                    canary_detect.append(failed["at"] - route["at"])
                    canary_back.append(router.applied[-1][0] - failed["at"])
                    time.sleep(0.3)
                    canary_lost.append(lost(load, t0, time.monotonic()))
                for _ in range(runs):
                    n += 1
                    t0 = time.monotonic()
                    config = cfg(
                        f"g{n}",
                        guard_seconds=30,
                        monitor_interval=0.2,
                        failure_threshold=2,
                        **plain,
                    )
                    r = orch.deploy_with_strategy(config, "blue_green")
                    assert r.success and r.metadata is not None, r.error_message
                    addr = r.metadata.extra["instances"][0]["address"]
                    time.sleep(0.5)
                    t1 = time.monotonic()
                    http_get(f"http://{addr}/admin/fail?mode=unhealthy", method="POST")
                    back = wait_for(lambda v=f"g{n}": primaries() and v not in primaries())
                    guard_detect.append(back - t1)
                    time.sleep(0.3)
                    guard_lost.append(lost(load, t0, time.monotonic()))
                    n += 1  # the next deploy replaces what the guard restored
                    assert orch.deploy_with_strategy(cfg(f"g{n}", **plain), "blue_green").success
                for _ in range(runs):
                    n += 1
                    version = f"g{n}"
                    out: list[Any] = []
                    t0 = time.monotonic()
                    config = cfg(version, bake_seconds=30.0, **plain)
                    th = threading.Thread(
                        target=deploy_into, args=(orch, config, "blue_green", out)
                    )
                    th.start()
                    wait_for(lambda v=version: primaries() == [v])
                    time.sleep(0.3)
                    inst = next(
                        inst
                        for dep in orch.get_deployment_history()
                        if dep.version == version
                        for inst in dep.extra.get("instances", [])
                    )
                    killed = time.monotonic()
                    os.kill(inst["pid"], signal.SIGKILL)
                    th.join(30)
                    kill_back.append(router.applied[-1][1] - killed)
                    time.sleep(0.3)
                    kill_lost.append(lost(load, t0, time.monotonic()))
                for _ in range(runs):
                    n += 1
                    t0 = time.monotonic()
                    assert orch.deploy_with_strategy(cfg(f"g{n}", **plain), "recreate").success
                    time.sleep(0.3)
                    recreate_lost.append(lost(load, t0, time.monotonic()))
                total = load.result
        finally:
            orch.close()
    cpu = log_cpu_per_1000_lines()
    print("\n## Rollouts judged on nginx's access log, guarded after promotion\n")
    print(
        f"Same command; {RATE:.0f} req/s keep-alive GETs on /predict through nginx, no metrics "
        f"URL (the router's log judges); {total.total:,} requests, {total.retries} retried "
        f"once by the client. Median (min-max) of {runs} runs each.\n"
    )
    print("| figure | value | target / note |")
    print("|---|---|---|")
    print(
        f"| canary (10 %) of a version failing 30 %: its step routed -> gate failed "
        f"(router's measurement) | {fmt(canary_detect)} | check_interval 0.1 s, min_samples 20 |"
    )
    print(f"| ... gate failed -> traffic back on stable | {fmt(canary_back)} | one router change |")
    print(f"| ... requests lost (transport errors, 502-504) | {max(canary_lost)} max | 0 |")
    print(
        f"| post-promotion: /health starts failing -> traffic back on the previous version | "
        f"{fmt(guard_detect)} | failure_threshold 2 x monitor_interval 0.2 s + a router change |"
    )
    print(f"| ... requests lost | {max(guard_lost)} max ({sum(guard_lost)} total) | 0 GETs |")
    print(
        f"| new version SIGKILLed during its bake -> traffic back on the previous version | "
        f"{fmt(kill_back)} | the previous version is its nginx backup meanwhile |"
    )
    print(f"| ... requests lost | {max(kill_lost)} max ({sum(kill_lost)} total) | 0 GETs |")
    print(
        f"| recreate: requests lost per deploy | {statistics.median(recreate_lost):,.0f} median "
        f"({min(recreate_lost)}-{max(recreate_lost)}) | its outage by design |"
    )
    print(
        f"| reading the access log: CPU per 1,000 lines | {cpu * 1000:.2f} ms | at 1,000 req/s: "
        f"{cpu * 100:.2f} % of one core (target < 2 %) |"
    )


if __name__ == "__main__":
    sys.exit(main())
