"""A blocking custom checker or resource monitor stalls its own deployments only."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from crackseg.utils.deployment.health_monitoring import (
    DeploymentHealthMonitor,
    HealthChecker,
    HealthCheckResult,
    ResourceMetrics,
    ResourceMonitor,
)
from crackseg.utils.deployment.monitoring.isolation import BlockingRunner, Busy, Overdue
from tests.support.servers import HealthServer

INTERVAL = 0.3


@pytest.fixture()
def health_url() -> Iterator[str]:
    with HealthServer() as srv:
        yield srv.url("/health")


TIMEOUT = 0.1


class HangingForSome(HealthChecker):
    """Healthy at once, except for URLs with ``/block``: those never return (until released)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: dict[str, int] = {}
        self.timeouts: set[float] = set()
        self.hung_on: set[int] = set()  # the threads the hanging calls hold
        self._lock = threading.Lock()

    def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
        with self._lock:
            self.calls[url] = self.calls.get(url, 0) + 1
            self.timeouts.add(timeout)
            if "/block" in url:
                self.hung_on.add(threading.get_ident())
        if "/block" in url:
            self.release.wait()
        return HealthCheckResult(True, "healthy", 1.0)

    def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
        return True


POOL = BlockingRunner().max_workers  # the monitor's pool (a runner starts no thread)


def _blocking_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("crackseg-blocking"))


def test_twenty_hanging_checkers_leave_the_other_eighty_on_time() -> None:
    checker = HangingForSome()
    m = DeploymentHealthMonitor(checker, failure_threshold=1)
    try:
        for i in range(100):
            path = "/block" if i < 20 else "/ok"
            m.add_deployment_monitoring(
                f"d{i}", f"http://127.0.0.1:9/{i}{path}", check_interval=INTERVAL, timeout=TIMEOUT
            )
        m.start_monitoring()
        t0 = time.monotonic()
        # Long enough for the old shared 64-thread pool to be exhausted by the hanging 20.
        time.sleep(6.0)
        elapsed = time.monotonic() - t0
        statuses = m.get_all_deployment_statuses()
        stats = m.engine_stats()
        threads = _blocking_threads()
        calls = dict(checker.calls)  # before the release lets the hanging calls return
        hung_on = set(checker.hung_on)
    finally:
        checker.release.set()
        m.close()
    expected = int(elapsed / INTERVAL) - 2  # generous: two intervals of slack
    for i in range(20, 100):
        st = statuses[f"d{i}"]
        assert st["total_checks"] >= expected, (i, st["total_checks"], expected)
        history = m.get_health_history(f"d{i}")
        assert all(r.success for r in history), [r.error_message for r in history if not r.success]
        gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(history)]
        assert max(gaps) < INTERVAL + 0.5, max(gaps)  # every check on time
    for i in range(20):
        st = statuses[f"d{i}"]
        assert st["health_status"] == "unhealthy"
        # the configured timeout is the one given and the one reported
        assert f"{TIMEOUT:g}s timeout" in st["last_error"] or f"is {TIMEOUT:g}s" in st["last_error"]
        assert st["busy_checks"] >= 3, st
        # one call per hanging deployment, however many checks came due: no pile-up
        assert calls[f"http://127.0.0.1:9/{i}/block"] == 1
    assert checker.timeouts == {TIMEOUT}
    # The hanging 20 hold one thread each, and the healthy 80 only threads of the pool's
    # capacity. How many of those a burst of due checks takes depends on how soon the
    # machine runs the idle workers (40 were seen under load): the runner's own test below
    # counts them exactly.
    assert len(hung_on) == 20 and stats["blocking_overdue_now"] == 20
    assert 20 <= threads <= 20 + POOL, threads
    assert stats["blocking_busy_runs"] >= 60
    assert stats["blocking_overdue_calls"] == 20


def test_busy_and_timeout_messages() -> None:
    checker = HangingForSome()
    m = DeploymentHealthMonitor(checker)
    try:
        m.add_deployment_monitoring(
            "b", "http://127.0.0.1:9/block", check_interval=0.2, timeout=0.2
        )
        m.start_monitoring()
        assert m.wait_for_checks("b", 1, timeout=5)
        first = m.get_deployment_status("b")["last_error"]
        assert first.startswith("timeout: HangingForSome.check_health did not return within")
        assert "0.2s timeout" in first and "given up after 0.7s" in first
        assert m.wait_for_checks("b", 1, timeout=5)
        st = m.get_deployment_status("b")
        assert "still running after" in st["last_error"] and st["busy_checks"] >= 1
        assert m.engine_stats()["blocking_overdue_now"] == 1
    finally:
        checker.release.set()
        m.close()


class HangingResources(ResourceMonitor):
    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def get_system_metrics(self) -> ResourceMetrics:
        return ResourceMetrics(1.0, 1.0, 1.0, 0.0)

    def get_process_metrics(self, process_name: str) -> ResourceMetrics:
        self.calls += 1
        if process_name == "stuck":
            self.release.wait()
        return ResourceMetrics(1.0, 1.0, 1.0, 0.0, process_name=process_name)


def test_hanging_resource_monitor_holds_one_thread_and_no_other_deployment(
    health_url: str,
) -> None:
    res = HangingResources()
    m = DeploymentHealthMonitor(resource_monitor=res)
    try:
        m.add_deployment_monitoring("stuck", health_url, "stuck", check_interval=0.1, timeout=0.1)
        m.add_deployment_monitoring("fine", health_url, "fine", check_interval=0.1, timeout=0.5)
        m.start_monitoring()
        assert m.wait_for_checks("fine", 15, timeout=10)
        assert m.wait_for_checks("stuck", 3, timeout=10)  # its health checks go on
        assert m.get_deployment_status("fine")["process_running"] is True
        calls_stuck = m.engine_stats()["blocking_overdue_calls"]
        assert calls_stuck == 1  # one hanging call, not one per check
    finally:
        res.release.set()
        m.close()


async def test_runner_one_call_per_key_and_capacity_replaced() -> None:
    runner = BlockingRunner(max_workers=2, idle_seconds=0.2)
    gate = threading.Event()
    try:
        with pytest.raises(Overdue):
            await runner.call("a", 0.05, gate.wait)
        with pytest.raises(Busy):
            await runner.call("a", 0.05, gate.wait)
        with pytest.raises(Overdue):
            await runner.call("b", 0.05, gate.wait)
        # both original workers hang, yet calls that return still find threads
        assert await asyncio.gather(
            *(runner.call(f"k{i}", 2.0, sum, [i, 1]) for i in range(5))
        ) == [
            1,
            2,
            3,
            4,
            5,
        ]
        assert runner.stats()["blocking_overdue_now"] == 2
    finally:
        gate.set()
    deadline = time.monotonic() + 5
    while runner.stats()["blocking_overdue_now"] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert runner.stats()["blocking_overdue_now"] == 0
    assert await runner.call("a", 1.0, sum, [2, 2]) == 4  # the key is free again
    runner.close()


async def test_hanging_calls_hold_one_thread_each_and_calls_that_return_share_one() -> None:
    runner = BlockingRunner(idle_seconds=60.0)
    gate = threading.Event()
    try:
        for i in range(20):
            with pytest.raises(Overdue):
                await runner.call(f"hang{i}", 0.01, gate.wait)
        for i in range(80):
            assert await runner.call(f"ok{i}", 5.0, sum, [i, 1]) == i + 1
        stats = runner.stats()
    finally:
        gate.set()
        runner.close()
    # Each call that returned left its thread idle before its caller resumed: one thread
    # serves all 80, beside the 20 written off to the hanging calls.
    assert stats["blocking_overdue_now"] == 20 and stats["blocking_overdue_calls"] == 20
    assert stats["blocking_threads"] == 21, stats
