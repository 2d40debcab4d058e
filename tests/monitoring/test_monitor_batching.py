"""Batched recording changes nothing: the same results give the same history, alerts,
notifications and statuses whether recorded together or one at a time (issue 14)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.health_monitoring import (
    DeploymentHealthMonitor,
    HealthChecker,
    HealthCheckResult,
)
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.monitoring.checkpath import Done as _Done
from crackseg.utils.deployment.monitoring.engine import MAX_STARTS_PER_WAKE
from crackseg.utils.deployment.monitoring.gcpolicy import keep_gc_frozen
from tests.support.monitor_servers import LiveServer
from tests.support.wait import poll

ROUNDS = 40
DEPLOYMENTS = 24
INTERVAL = 10.0


class Collect(AlertHandler):
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, str]] = []
        self._lock = threading.Lock()

    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        with self._lock:
            self.sent.append(
                (metadata.deployment_id, alert_type, kwargs["state"], kwargs["message"])
            )


def _script(d: int, k: int, t: float) -> HealthCheckResult:
    """Deployment ``d``'s ``k``-th result: healthy, outages, slow spells, flapping, degraded."""
    kind = d % 6
    if kind == 1 and 5 <= k < 14:  # an outage: fires, then resolves
        return HealthCheckResult(False, "unhealthy", 3.0, t, "HTTP 500", {"http_status": 500})
    if kind == 2 and 8 <= k < 20:  # slow: high_response_time fires and resolves
        return HealthCheckResult(True, "healthy", 1500.0 + k, t, None, {"http_status": 200})
    if kind == 3 and k >= 4:  # flapping: up, down, up, down ...
        ok = k % 2 == 0
        return HealthCheckResult(ok, "healthy" if ok else "unhealthy", 2.0, t,
                                 None if ok else "timeout after 10s",
                                 {"http_status": 200} if ok else {"error_type": "timeout"})  # fmt: skip
    if kind == 4 and k % 7 == 3:  # a rare failure: error rate above 5 %, never 3 in a row
        return HealthCheckResult(False, "unhealthy", 1.0, t, "connection refused",
                                 {"error_type": "connection_refused"})  # fmt: skip
    if kind == 5 and 10 <= k < 16:
        return HealthCheckResult(False, "degraded", 4.0, t, None, {"http_status": 200})
    return HealthCheckResult(True, "healthy", 1.0 + d * 0.1 + k * 0.001, t, None,
                             {"http_status": 200})  # fmt: skip


def _monitor() -> tuple[DeploymentHealthMonitor, Collect]:
    m = DeploymentHealthMonitor(flap_max_changes=4, flap_window=120.0)
    handler = Collect()
    m.add_alert_handler(handler)
    for d in range(DEPLOYMENTS):
        m.add_deployment_monitoring(f"d{d}", f"http://127.0.0.1:9/{d}", check_interval=INTERVAL)
    return m, handler


def _rounds(m: DeploymentHealthMonitor) -> list[list[_Done]]:
    mono0, wall0 = 1000.0, 1_700_000_000.0
    entries = {d: m._deployments[f"d{d}"] for d in range(DEPLOYMENTS)}
    out = []
    for k in range(ROUNDS):
        batch = []
        for d in range(DEPLOYMENTS):
            # Within one round the results end a little apart, as they do on the loop.
            at = mono0 + k * INTERVAL + d * 0.001
            batch.append(_Done(entries[d], _script(d, k, wall0 + at - mono0), None, None, at))
        out.append(batch)
    return out


def _observed(m: DeploymentHealthMonitor, handler: Collect) -> dict[str, Any]:
    assert m.dispatcher.wait_idle(10)
    statuses = m.get_all_deployment_statuses()
    for s in statuses.values():
        assert s["total_checks"] == ROUNDS
    return {
        "statuses": statuses,
        "history": {k: [r.to_dict() for r in m.get_health_history(k)] for k in statuses},
        "alerts": [a.to_dict() for a in m.get_alert_history()],
        "active": m.get_active_alerts(),
        "sent": sorted(handler.sent),
    }


def test_batched_recording_gives_what_one_at_a_time_gives() -> None:
    batched, h_batched = _monitor()
    single, h_single = _monitor()
    try:
        for batch in _rounds(batched):
            assert batched._checks.record_batch(batch) == [True] * len(batch)
        for batch in _rounds(single):
            for done in batch:
                assert single._checks.record_batch([done]) == [True]
        a, b = _observed(batched, h_batched), _observed(single, h_single)
        # The script exercises every lifecycle it means to: not an empty comparison.
        kinds = {(t, s) for _, t, s, _ in a["sent"]}
        assert {
            ("health_check_failed", "firing"),
            ("health_check_failed", "resolved"),
            ("high_response_time", "firing"),
            ("high_response_time", "resolved"),
            ("high_error_rate", "firing"),
            ("deployment_flapping", "firing"),
        } <= kinds, kinds
        assert a == b
    finally:
        batched.close()
        single.close()


def test_a_result_of_a_removed_deployment_is_not_recorded_in_its_batch() -> None:
    m, _ = _monitor()
    try:
        batch = _rounds(m)[0][:3]
        m.remove_deployment_monitoring("d1")
        assert m._checks.record_batch(batch) == [True, False, True]
        assert m.get_deployment_status("d0")["total_checks"] == 1
        assert m.get_health_history("d1") == []
    finally:
        m.close()


def test_the_running_engine_records_in_batches_and_counts_every_check_once() -> None:
    with LiveServer() as target:
        m = DeploymentHealthMonitor()
        n = 60
        for i in range(n):
            m.add_deployment_monitoring(f"d{i}", target.url(f"/health?d={i}"), check_interval=0.2)
        try:
            m.start_monitoring()
            assert poll(
                lambda: all(
                    s["total_checks"] >= 3 for s in m.get_all_deployment_statuses().values()
                ),
                20,
            )
            m.stop_monitoring()
            stats = m.engine_stats()
            recorded = sum(s["total_checks"] for s in m.get_all_deployment_statuses().values())
            assert stats["checks_done"] == recorded
            assert stats["checks_started"] == recorded + stats["checks_cancelled"]
            assert stats["in_flight"] == 0
            # Checks due together started together: far fewer wake-ups than checks.
            assert stats["batches"] < stats["checks_started"] / 3, stats
        finally:
            m.close()


def test_statistics_after_a_reset_count_only_checks_started_after_it() -> None:
    with LiveServer() as target:
        target.set("/slow", delay=0.4)
        m = DeploymentHealthMonitor()
        for i in range(10):
            m.add_deployment_monitoring(f"s{i}", target.url(f"/slow?d={i}"), check_interval=0.5)
        try:
            m.start_monitoring()
            assert poll(lambda: m.engine_stats()["in_flight"] == 10, 10)
            m._engine.reset_stats()  # while ten checks run
            time.sleep(1.5)
            stats = m.engine_stats()
            assert stats["checks_done"] <= stats["checks_started"] <= stats["checks_due"]
            assert stats["checks_started"] == (
                stats["checks_done"] + stats["checks_cancelled"] + stats["in_flight"]
            )
        finally:
            m.close()


class Instant(HealthChecker):
    """Answers at once on the loop (an async checker of its own: no thread, no socket)."""

    def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
        return HealthCheckResult(True, "healthy", 0.1)

    def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
        return True

    async def check_health_async(self, url: str, timeout: float = 10) -> HealthCheckResult:
        return HealthCheckResult(True, "healthy", 0.1)


def test_after_a_stall_the_backlog_starts_in_bounded_batches() -> None:
    m = DeploymentHealthMonitor(Instant())
    n = 1500
    stalled = threading.Event()

    def stall_once(deployment_id: str, result: HealthCheckResult) -> None:
        if not stalled.is_set() and m.get_deployment_status("d0")["total_checks"] >= 2:
            stalled.set()
            time.sleep(1.5)  # the loop blocked: every deadline of 1.5 s is due at once

    for i in range(n):
        m.add_deployment_monitoring(f"d{i}", f"http://127.0.0.1:9/{i}", check_interval=1.0)
    try:
        m.start_monitoring()
        assert poll(lambda: m.get_deployment_status(f"d{n - 1}")["total_checks"] >= 1, 20)
        m._engine.reset_stats()
        m.add_result_listener(stall_once)
        assert stalled.wait(10)
        assert poll(lambda: m.engine_stats()["checks_done"] >= 2 * n, 20)
        stats = m.engine_stats()
        assert n > MAX_STARTS_PER_WAKE
        assert stats["batch_max"] <= MAX_STARTS_PER_WAKE, stats
    finally:
        m.close()


def test_the_service_policy_keeps_freezing_what_survives() -> None:
    async def main() -> int:
        keeper = asyncio.create_task(keep_gc_frozen(0.05))
        try:
            await asyncio.sleep(0.3)
            return gc.get_freeze_count()
        finally:
            keeper.cancel()

    try:
        assert asyncio.run(main()) > 0
    finally:
        gc.unfreeze()
