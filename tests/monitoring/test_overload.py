"""Overload is the monitor's failure: a stalled loop marks no deployment unhealthy, is
reported (alert, /healthz, engine stats) and sheds load; checks cut by a stop are not done."""

from __future__ import annotations

import asyncio
import threading
import time

import requests

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker, failure
from crackseg.utils.deployment.monitoring.engine import Engine
from crackseg.utils.deployment.monitoring.monitor import MONITOR_ID, OVERLOADED
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.monitor_servers import LiveServer
from tests.support.wait import poll, wait_until


class Recorder(AlertHandler):
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send_alert(self, alert_type: str, deployment: object, **kw: object) -> bool:
        self.sent.append((str(kw.get("deployment_id")), alert_type, str(kw.get("state"))))
        return True


class DeadlineChecker(HealthChecker):
    """Like any client with a deadline: a stall of the caller's loop past it is a timeout."""

    def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
        raise AssertionError("async path expected")

    def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
        return True

    async def check_health_async(self, url: str, timeout: float = 10) -> HealthCheckResult:
        t0 = time.monotonic()
        await asyncio.sleep(0.02)  # the answer is on its way
        took = time.monotonic() - t0
        if took > timeout:
            return failure(f"timeout after {timeout:g}s", took * 1000.0)
        return HealthCheckResult(True, "healthy", took * 1000.0, details={"http_status": 200})


def test_a_stalled_loop_is_the_monitors_failure_not_the_targets() -> None:
    with LiveServer() as target:
        m = DeploymentHealthMonitor(DeadlineChecker(), failure_threshold=1)
        rec = Recorder()
        m.add_alert_handler(rec)
        m._engine.guard.calm = 1.5  # the test's patience, not the default 30 s
        block = threading.Event()

        def stall_the_loop(deployment_id: str, result: HealthCheckResult) -> None:
            if block.is_set():
                block.clear()
                time.sleep(1.5)  # a listener that blocks: the monitor saturated

        m.add_result_listener(stall_the_loop)
        for i in range(20):
            m.add_deployment_monitoring(f"d{i}", target.url(), check_interval=0.1, timeout=0.3)
        try:
            m.start_monitoring()
            with WebServer(m) as web:
                assert all(m.wait_for_checks(f"d{i}", 2) for i in range(20))
                assert requests.get(web.url + "/healthz", timeout=5).status_code == 200
                block.set()
                reason = wait_until(m.overload_reason, 10, "the overload to be noticed")
                assert "overloaded" in reason and "ms late" in reason
                r = requests.get(web.url + "/healthz", timeout=5)
                assert r.status_code == 503 and r.json()["reason"] == reason
                stats = m.engine_stats()
                assert stats["overloaded"] is True and stats["interval_stretch"] > 1.0
                assert stats["checks_discarded_overload"] >= 1  # timed out under the stall
                assert poll(lambda: m.overload_reason() is None, 15)
                assert requests.get(web.url + "/healthz", timeout=5).status_code == 200
                assert all(m.wait_for_checks(f"d{i}", 2) for i in range(20))
            m.dispatcher.wait_idle(5)
            statuses = m.get_all_deployment_statuses()
            assert all(s["health_status"] == "healthy" for s in statuses.values()), statuses
            assert all(h.success for i in range(20) for h in m.get_health_history(f"d{i}"))
            types = {(a.deployment_id, a.alert_type, a.state) for a in m.get_alert_history()}
            assert types == {
                (MONITOR_ID, OVERLOADED, "firing"),
                (MONITOR_ID, OVERLOADED, "resolved"),
            }
            assert sorted(rec.sent) == sorted(
                [(MONITOR_ID, OVERLOADED, "firing"), (MONITOR_ID, OVERLOADED, "resolved")]
            )
        finally:
            m.close()


def test_checks_cut_short_by_a_stop_are_not_counted_as_done() -> None:
    with LiveServer() as target:
        target.set("/hang", hang=True)
        m = DeploymentHealthMonitor()
        for i in range(5):
            m.add_deployment_monitoring(f"h{i}", target.url("/hang"), check_interval=0.1)
        try:
            m.start_monitoring()
            assert poll(lambda: m.engine_stats()["in_flight"] == 5, 10)
            m.stop_monitoring()
            stats = m.engine_stats()
            recorded = sum(s["total_checks"] for s in m.get_all_deployment_statuses().values())
            assert stats["checks_done"] == recorded == 0
            assert stats["checks_cancelled"] == 5
        finally:
            m.close()


def test_a_check_without_a_free_connection_is_the_monitors_failure() -> None:
    from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker

    with LiveServer() as slow, LiveServer() as healthy:
        slow.set("/hang", hang=True)
        # Two connections in all, both held by checks of a hanging endpoint.
        m = DeploymentHealthMonitor(DefaultHealthChecker(max_connections=2))
        for i in range(2):
            m.add_deployment_monitoring(f"h{i}", slow.url("/hang"), check_interval=0.2, timeout=1.5)
        try:
            m.start_monitoring()
            assert poll(lambda: m.engine_stats()["in_flight"] == 2, 10)
            for i in range(3):
                m.add_deployment_monitoring(
                    f"ok{i}", healthy.url(f"/health?d={i}"), check_interval=0.2, timeout=0.3
                )
            reason = wait_until(m.overload_reason, 10, "the saturation to be reported")
            assert "waiting for a connection: 2 open, limit 2" in reason
            assert m.engine_stats()["checks_discarded_overload"] >= 1
            # Not one failure held against the healthy deployments.
            for i in range(3):
                assert all(r.success for r in m.get_health_history(f"ok{i}"))
                assert m.get_deployment_status(f"ok{i}")["health_status"] != "unhealthy"
        finally:
            m.close()


def test_deadlines_set_while_shedding_load_come_back_when_it_ends() -> None:
    """A 2 s interval's round started under an 8x stretch is due 16 s later; once the loop
    keeps up again, its next check comes about one interval later, not the stretched 16 s."""
    starts: list[tuple[float, float]] = []

    def start(keys: list[str]) -> None:
        starts.append((time.monotonic(), engine.guard.stretch))
        engine.finish(keys, recorded=True)

    engine = Engine(start)
    engine.guard.beat = 0.01  # relaxes from 8x within about a second: the test's patience
    shedding = threading.Event()
    shedding.set()

    def late_starts() -> None:
        # What the engine reports when its checks start late: shed load, up to 8x.
        if shedding.is_set() and engine.loop is not None:
            engine.guard.note_late(0.5)
            engine.loop.call_later(0.02, late_starts)

    engine.schedule("a", 2.0)
    engine.start_in_thread()
    try:
        assert engine.loop is not None
        engine.loop.call_soon_threadsafe(late_starts)
        wait_until(lambda: any(s >= 7.0 for _, s in starts), 10, "a round under the stretch")
        shedding.clear()
        shed_at, n = starts[-1][0], len(starts)
        wait_until(lambda: engine.guard.stretch == 1.0, 10, "the stretch to relax")
        relaxed_at = time.monotonic()
        wait_until(lambda: len(starts) > n, 8, "the next round after the stretch relaxed")
        next_at, stretch = starts[n]
        assert stretch == 1.0
        assert next_at - relaxed_at <= 2.0 + 1.0  # within one interval (plus a margin)
        assert next_at - shed_at < 10.0  # the stretched deadline said 14-16 s
    finally:
        engine.stop()
