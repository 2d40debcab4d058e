"""DeploymentHealthMonitor against real HTTP servers: scheduling, status, lifecycle, threads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.health_monitoring import (
    DeploymentHealthMonitor,
    HealthChecker,
    HealthCheckResult,
)
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.monitor_servers import LiveServer
from tests.support.procs import named_process


class Recorder(AlertHandler):
    """Records every alert and lets a test wait for one."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.delay = delay
        self.fail = fail

    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self.cond:
            self.calls.append((alert_type, metadata.deployment_id, kwargs))
            self.cond.notify_all()
        if self.fail:
            raise RuntimeError("handler broke")

    def wait_for(self, pred: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.calls):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def of(self, alert_type: str, state: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            return [
                k
                for t, _, k in self.calls
                if t == alert_type and (state is None or k["state"] == state)
            ]


@pytest.fixture
def server() -> Iterator[LiveServer]:
    with LiveServer() as s:
        yield s


@pytest.fixture
def monitor() -> Iterator[DeploymentHealthMonitor]:
    m = DeploymentHealthMonitor(failure_threshold=2, success_threshold=1)
    yield m
    m.close()


def test_status_unknown_then_healthy(server: LiveServer, monitor: DeploymentHealthMonitor) -> None:
    monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.2)
    assert monitor.get_deployment_status("svc")["health_status"] == "unknown"
    monitor.start_monitoring()
    assert monitor.wait_for_checks("svc", 2, timeout=10)
    st = monitor.get_deployment_status("svc")
    assert st["health_status"] == "healthy"
    assert st["response_time_ms"] > 0
    assert st["last_check"] is not None and st["last_check"] <= time.time()
    assert st["consecutive_failures"] == 0
    assert st["uptime_percent"] == 100.0
    assert st["error_rate_percent"] == 0.0
    assert st["active_alerts"] == []
    assert st["resource_metrics"] is None  # no process named: the machine is not a deployment
    host = monitor.host_metrics()  # the machine's use, once, beside the deployments
    assert host is not None and 0 <= host.cpu_usage_percent <= 100 and host.process_name is None
    assert st["monitoring_active"] is True
    assert len(monitor.get_health_history("svc")) >= 2


def test_start_returns_at_once_and_twice_is_harmless(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    t0 = time.monotonic()
    monitor.start_monitoring()
    monitor.start_monitoring()
    assert time.monotonic() - t0 < 2.0
    assert monitor.monitoring_active
    # added while running: checked at once, not after a whole interval
    monitor.add_deployment_monitoring("late", server.url(), check_interval=3600)
    assert monitor.wait_for_checks("late", 1, timeout=5)
    assert sum(1 for t in threading.enumerate() if t.name == "crackseg-monitor") == 1


def test_stop_is_prompt_while_a_check_hangs(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    server.set("/hang", hang=True)
    monitor.add_deployment_monitoring("hang", server.url("/hang"), check_interval=0.2, timeout=30)
    monitor.start_monitoring()
    deadline = time.monotonic() + 5
    while server.hits.get("/hang", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.hits.get("/hang", 0) >= 1
    t0 = time.monotonic()
    monitor.stop_monitoring()
    assert time.monotonic() - t0 < 2.0  # "about a second", with margin
    assert not monitor.monitoring_active
    assert not any(t.name == "crackseg-monitor" for t in threading.enumerate())


def test_hanging_endpoint_never_delays_another(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    server.set("/hang", hang=True)
    monitor.add_deployment_monitoring("hang", server.url("/hang"), check_interval=0.1, timeout=30)
    monitor.add_deployment_monitoring("fast", server.url(), check_interval=0.1)
    monitor.start_monitoring()
    assert monitor.wait_for_checks("fast", 10, timeout=10)
    assert monitor.get_deployment_status("hang")["total_checks"] == 0
    # the hanging deployment is not checked again while its check runs: no pile-up
    assert server.hits.get("/hang", 0) == 1


def test_timeout_is_reported(server: LiveServer, monitor: DeploymentHealthMonitor) -> None:
    server.set("/slow", delay=5)
    monitor.add_deployment_monitoring("slow", server.url("/slow"), check_interval=10, timeout=0.3)
    monitor.start_monitoring()
    assert monitor.wait_for_checks("slow", 1, timeout=5)
    st = monitor.get_deployment_status("slow")
    assert st["health_status"] == "unhealthy"
    assert "timeout" in st["last_error"]


def test_alert_fires_once_repeats_never_and_resolves_once(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    rec = Recorder()
    monitor.add_alert_handler(rec)
    server.set("/health", status=500, body="boom")
    monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    monitor.start_monitoring()
    assert rec.wait_for(lambda c: len(c) >= 1)
    assert monitor.wait_for_checks("svc", 10, timeout=10)  # many more failures: no spam
    fired = rec.of("health_check_failed", "firing")
    assert len(fired) == 1
    k = fired[0]
    assert k["severity"] == "critical" and k["firing"] and not k["resolved"]
    assert "HTTP 500" in k["message"]
    st = monitor.get_deployment_status("svc")
    assert "health_check_failed" in [a["alert_type"] for a in st["active_alerts"]]
    assert st["consecutive_failures"] >= 10
    server.set("/health")
    assert rec.wait_for(lambda c: any(k["state"] == "resolved" for _, _, k in c))
    assert monitor.wait_for_checks("svc", 5, timeout=10)
    assert len(rec.of("health_check_failed", "resolved")) == 1
    assert len(rec.of("health_check_failed", "firing")) == 1
    # the error rate over the window stays high for a while: only the check alert resolved
    active = [a["alert_type"] for a in monitor.get_deployment_status("svc")["active_alerts"]]
    assert "health_check_failed" not in active
    history = [(a.alert_type, a.state) for a in monitor.get_alert_history("svc")]
    assert ("health_check_failed", "firing") in history
    assert ("health_check_failed", "resolved") in history


def test_alert_needs_consecutive_failures(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    rec = Recorder()
    monitor.add_alert_handler(rec)
    server.set("/health", status=500)
    monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.1, failure_threshold=4)
    monitor.start_monitoring()
    assert monitor.wait_for_checks("svc", 3, timeout=10)
    monitor.stop_monitoring()
    total = monitor.get_deployment_status("svc")["total_checks"]
    monitor.dispatcher.wait_idle(5)
    assert (rec.of("health_check_failed") == []) == (total < 4)


def test_repeat_interval_per_rule_renotifies(server: LiveServer) -> None:
    m = DeploymentHealthMonitor(
        failure_threshold=1, repeat_interval=3600, repeat_intervals={"health_check_failed": 0.3}
    )
    rec = Recorder()
    m.add_alert_handler(rec)
    server.set("/health", status=503, body='{"status": "unhealthy"}')
    m.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    try:
        m.start_monitoring()
        assert rec.wait_for(lambda c: sum(1 for _, _, k in c if k["repeat"]) >= 1)
        firing = rec.of("health_check_failed", "firing")
        assert firing[0]["repeat"] is False and firing[1]["repeat"] is True
        assert firing[1]["started_at"] == firing[0]["started_at"]
        # the error-rate alert keeps the hour-long default: fired once, not repeated
        assert [k["repeat"] for k in rec.of("high_error_rate", "firing")] == [False]
    finally:
        m.close()


def test_degraded_is_a_warning(server: LiveServer, monitor: DeploymentHealthMonitor) -> None:
    rec = Recorder()
    monitor.add_alert_handler(rec)
    server.set("/health", status=503, body='{"status": "degraded", "issues": ["cache_down"]}')
    monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    monitor.start_monitoring()
    assert rec.wait_for(lambda c: len(c) >= 1)
    assert monitor.get_deployment_status("svc")["health_status"] == "degraded"
    assert rec.of("health_check_failed")[0]["severity"] == "warning"


def test_thresholds_mutated_or_replaced_apply_to_next_check(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    rec = Recorder()
    monitor.add_alert_handler(rec)
    monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    monitor.start_monitoring()
    assert monitor.wait_for_checks("svc", 3)
    assert rec.of("high_response_time") == []
    monitor.alert_thresholds["response_time_ms"] = 0.0
    assert rec.wait_for(lambda c: any(t == "high_response_time" for t, _, _ in c))
    k = rec.of("high_response_time", "firing")[0]
    assert k["threshold"] == 0.0 and k["value"] > 0
    monitor.alert_thresholds = {"response_time_ms": 60_000.0}
    assert rec.wait_for(lambda c: len(rec.of("high_response_time", "resolved")) == 1)


def test_per_deployment_threshold_override(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    rec = Recorder()
    monitor.add_alert_handler(rec)
    monitor.add_deployment_monitoring(
        "strict", server.url(), check_interval=0.1, thresholds={"response_time_ms": 0}
    )
    monitor.add_deployment_monitoring("lax", server.url(), check_interval=0.1)
    monitor.start_monitoring()
    assert rec.wait_for(lambda c: any(t == "high_response_time" for t, _, _ in c))
    assert monitor.wait_for_checks("lax", 5)
    assert {d for t, d, _ in rec.calls if t == "high_response_time"} == {"strict"}


def test_error_rate_alert(server: LiveServer) -> None:
    m = DeploymentHealthMonitor(failure_threshold=1, success_threshold=1)
    rec = Recorder()
    m.add_alert_handler(rec)
    m.alert_thresholds["error_rate_percent"] = 20.0
    m.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    try:
        m.start_monitoring()
        assert m.wait_for_checks("svc", 3)
        server.set("/health", status=500)
        assert rec.wait_for(lambda c: len(rec.of("high_error_rate", "firing")) == 1)
        k = rec.of("high_error_rate", "firing")[0]
        assert k["value"] > 20.0 and k["threshold"] == 20.0
        assert m.get_deployment_status("svc")["error_rate_percent"] > 20.0
    finally:
        m.close()


def test_process_alerts(server: LiveServer, tmp_path: Any) -> None:
    script = tmp_path / "crackseg_mem_probe_svc.py"
    script.write_text("import time\nblob = bytearray(30 * 1024 * 1024)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)])
    m = DeploymentHealthMonitor(failure_threshold=1, success_threshold=1)
    rec = Recorder()
    m.add_alert_handler(rec)
    try:
        m.add_deployment_monitoring(
            "mem",
            server.url(),
            process_name="crackseg_mem_probe_svc.py",
            check_interval=0.1,
            thresholds={"memory_usage_mb": 10.0},
        )
        m.add_deployment_monitoring(
            "gone", server.url(), process_name="no-such-process-crackseg", check_interval=0.1
        )
        m.start_monitoring()
        assert rec.wait_for(lambda c: rec.of("process_not_running") != [])
        assert rec.of("process_not_running")[0]["severity"] == "critical"
        assert m.get_deployment_status("gone")["process_running"] is False
        assert rec.wait_for(lambda c: rec.of("high_memory_usage") != [])
        k = rec.of("high_memory_usage")[0]
        assert k["value"] > 10.0
        st = m.get_deployment_status("mem")
        assert st["process_running"] is True
        assert st["resource_metrics"]["process_count"] >= 1
        proc.kill()
        proc.wait()
        assert rec.wait_for(
            lambda c: (
                len(rec.of("process_not_running")) >= 1
                and any(d == "mem" and t == "process_not_running" for t, d, _ in c)
            ),
            timeout=15,
        )
    finally:
        proc.kill()
        m.close()


def test_raising_and_blocking_handlers_do_not_delay_checks(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    slow = Recorder(delay=30)
    broken = Recorder(fail=True)
    good = Recorder()
    for h in (slow, broken, good):
        monitor.add_alert_handler(h)
    server.set("/health", status=500)
    monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    monitor.start_monitoring()
    assert good.wait_for(lambda c: len(c) >= 1)
    assert broken.wait_for(lambda c: len(c) >= 1)
    t0 = time.monotonic()
    assert monitor.wait_for_checks("svc", 10, timeout=10)
    assert time.monotonic() - t0 < 5
    stats = monitor.dispatcher.stats()
    assert any(
        s["failed"] >= 1 and "handler broke" in (s["last_error"] or "") for s in stats.values()
    )
    t0 = time.monotonic()
    monitor.stop_monitoring()
    assert time.monotonic() - t0 < 2.0


def test_flapping_alerts_once_not_on_every_change(server: LiveServer) -> None:
    m = DeploymentHealthMonitor(
        failure_threshold=1, success_threshold=1, flap_max_changes=3, flap_window=60
    )
    rec = Recorder()
    m.add_alert_handler(rec)
    server.set("/health", cycle=(200, 500))
    m.add_deployment_monitoring("flappy", server.url(), check_interval=0.1)
    try:
        m.start_monitoring()
        assert m.wait_for_checks("flappy", 20)
        m.stop_monitoring()
        m.dispatcher.wait_idle(5)
        assert len(rec.of("deployment_flapping", "firing")) == 1
        # before flapping was recognised (3 changes) at most two failures were notified
        assert len(rec.of("health_check_failed", "firing")) <= 2
        assert m.get_deployment_status("flappy")["flapping"] is True
        suppressed = [a for a in m.get_alert_history("flappy") if a.suppressed_reason == "flapping"]
        assert suppressed  # still recorded, just not sent
    finally:
        m.close()


def test_history_is_bounded(server: LiveServer) -> None:
    m = DeploymentHealthMonitor(max_history=5)
    m.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    try:
        m.start_monitoring()
        assert m.wait_for_checks("svc", 12)
        assert len(m.get_health_history("svc")) == 5
        assert m.get_resource_history("svc") == []  # no process: the machine is not a deployment
        assert m.get_deployment_status("svc")["total_checks"] >= 12
    finally:
        m.close()


def test_remove_resolves_and_stops_checks(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    rec = Recorder()
    monitor.add_alert_handler(rec)
    server.set("/health", status=500)
    monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    monitor.start_monitoring()
    assert rec.wait_for(lambda c: len(c) >= 1)
    assert monitor.remove_deployment_monitoring("svc") is True
    assert monitor.remove_deployment_monitoring("svc") is False
    assert rec.wait_for(lambda c: len(rec.of("health_check_failed", "resolved")) == 1)
    hits = server.hits.get("/health", 0)
    with pytest.raises(KeyError, match="not monitored"):
        monitor.get_deployment_status("svc")
    monitor.add_deployment_monitoring("other", server.url("/other"), check_interval=0.1)
    assert monitor.wait_for_checks("other", 5)
    assert server.hits.get("/health", 0) <= hits + 1  # at most one check was in flight


def test_bad_input_names_the_field(monitor: DeploymentHealthMonitor) -> None:
    with pytest.raises(ConfigError, match=r"check_interval: must be >= 0.1, got 0"):
        monitor.add_deployment_monitoring("x", "http://127.0.0.1:1/health", check_interval=0)
    with pytest.raises(ConfigError, match="health_check_url"):
        monitor.add_deployment_monitoring("x", "localhost:8080/health")
    with pytest.raises(ConfigError, match="deployment_id"):
        monitor.add_deployment_monitoring("", "http://127.0.0.1:1/health")
    with pytest.raises(
        ConfigError, match=r"alert_thresholds\['cpu_usage_percent'\]: must be a number"
    ):
        monitor.alert_thresholds["cpu_usage_percent"] = "high"
    with pytest.raises(ConfigError, match="unknown threshold"):
        monitor.alert_thresholds = {"cpu": 1.0}
    with pytest.raises(ConfigError, match="thresholds"):
        monitor.add_deployment_monitoring(
            "x", "http://127.0.0.1:1/health", thresholds={"memory_usage_mb": -1}
        )
    with pytest.raises(ConfigError, match=r"repeat_intervals\['cpu'\]: unknown alert type"):
        DeploymentHealthMonitor(repeat_intervals={"cpu": 60})
    with pytest.raises(ConfigError, match="handler"):
        monitor.add_alert_handler(object())  # type: ignore[arg-type]


def test_thread_safety_under_concurrent_changes(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    monitor.start_monitoring()
    errors: list[BaseException] = []

    def churn(n: int) -> None:
        try:
            for i in range(50):
                dep = f"d{n}-{i % 5}"
                monitor.add_deployment_monitoring(dep, server.url(), check_interval=0.1)
                monitor.get_all_deployment_statuses()
                monitor.alert_thresholds["response_time_ms"] = 1000.0 + i
                if i % 3 == 0:
                    monitor.remove_deployment_monitoring(dep)
        except BaseException as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    remaining = set(monitor.monitored_deployments)
    assert remaining
    dep = sorted(remaining)[0]
    assert monitor.wait_for_checks(dep, 2)


def test_export_format_atomic_and_redacted(
    server: LiveServer, monitor: DeploymentHealthMonitor, tmp_path: Any
) -> None:
    url = server.url("/health").replace("127.0.0.1", "user:s3cret@127.0.0.1") + "?token=abc123"
    monitor.add_deployment_monitoring("svc", url, process_name=None, check_interval=0.1)
    server.set("/health", status=500)
    with named_process() as proc:
        monitor.add_deployment_monitoring(
            "proc", server.url("/ok"), process_name=proc, check_interval=0.1
        )
        monitor.start_monitoring()
        assert monitor.wait_for_checks("svc", 3) and monitor.wait_for_checks("proc", 1)
    out = tmp_path / "deep" / "er" / "monitoring_data.json"
    assert monitor.export_monitoring_data(out) == out
    raw = out.read_bytes()
    assert b"s3cret" not in raw and b"abc123" not in raw
    data = orjson.loads(raw)
    assert isinstance(data["timestamp"], float)
    dep = data["monitored_deployments"]["svc"]
    assert dep["process_name"] is None and dep["check_interval"] == 0.1
    assert "***" in dep["health_check_url"]
    h = dep["health_history"][0]
    assert {"success", "status", "response_time_ms", "timestamp"} <= set(h)
    assert dep["resource_history"] == []  # no process: the machine is not a deployment
    r = data["monitored_deployments"]["proc"]["resource_history"][0]
    assert {
        "cpu_usage_percent",
        "memory_usage_mb",
        "disk_usage_percent",
        "network_io_mbps",
        "timestamp",
    } <= set(r)
    assert "health_check_failed" in {a["alert_type"] for a in data["alert_history"]}
    assert data["configuration"]["alert_thresholds"]["response_time_ms"] == 1000.0
    assert [p.name for p in out.parent.iterdir()] == ["monitoring_data.json"]  # no temp left


def test_custom_checker_runs_in_a_thread_and_is_bounded(server: LiveServer) -> None:
    class Stuck(HealthChecker):
        def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
            time.sleep(3)
            return HealthCheckResult(True, "healthy", 1.0)

        def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
            return True

    m = DeploymentHealthMonitor(health_checker=Stuck(), default_timeout=0.2)
    m.add_deployment_monitoring("stuck", server.url(), check_interval=10)
    m.add_deployment_monitoring("ok", server.url(), check_interval=10)
    try:
        m.start_monitoring()
        assert m.wait_for_checks("stuck", 1, timeout=5)  # outer bound: timeout + 2 s
        assert "timeout" in m.get_deployment_status("stuck")["last_error"]
    finally:
        m.close()


def test_many_hanging_custom_checks_do_not_stall_the_others(server: LiveServer) -> None:
    release = threading.Event()

    class SometimesStuck(HealthChecker):
        def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
            if "stuck" in url:
                release.wait(30)
            return HealthCheckResult(True, "healthy", 1.0)

        def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
            return True

    m = DeploymentHealthMonitor(health_checker=SometimesStuck(), default_timeout=30)
    for i in range(12):  # more than asyncio's default executor has threads here
        m.add_deployment_monitoring(f"stuck{i}", server.url(f"/stuck{i}"), check_interval=60)
    m.add_deployment_monitoring("fine", server.url(), check_interval=0.1)
    try:
        m.start_monitoring()
        assert m.wait_for_checks("fine", 5, timeout=10)
    finally:
        release.set()
        m.close()


def test_first_checks_are_spread_not_a_burst() -> None:
    starts: list[float] = []

    class Instant(HealthChecker):
        def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
            raise AssertionError("async path expected")

        def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
            return True

        async def check_health_async(self, url: str, timeout: float = 10) -> HealthCheckResult:
            starts.append(time.monotonic())
            return HealthCheckResult(True, "healthy", 0.1)

    m = DeploymentHealthMonitor(health_checker=Instant())
    for i in range(1000):
        m.add_deployment_monitoring(f"d{i}", f"http://127.0.0.1:9/{i}", check_interval=10)
    try:
        m.start_monitoring()
        deadline = time.monotonic() + 10
        while len(starts) < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(starts) == 1000
        span = max(starts) - min(starts)
        assert span >= 0.8  # 1 ms apart: one second, not one burst
        starts.sort()
        busiest = max(sum(1 for s in starts if t <= s < t + 0.1) for t in starts[::50])
        assert busiest <= 200
    finally:
        m.close()


async def test_async_api_on_a_running_loop(server: LiveServer) -> None:
    m = DeploymentHealthMonitor()
    m.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    await m.start_monitoring_async()
    assert m.monitoring_active
    assert not any(t.name == "crackseg-monitor" for t in threading.enumerate())
    deadline = time.monotonic() + 10
    while m.get_deployment_status("svc")["total_checks"] < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert m.get_deployment_status("svc")["health_status"] == "healthy"
    await m.stop_monitoring_async()
    assert not m.monitoring_active
    m.close()


async def test_sync_start_from_inside_a_running_loop(server: LiveServer) -> None:
    m = DeploymentHealthMonitor()
    m.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    m.start_monitoring()  # a plain call from async code: the engine gets its own thread
    ok = await asyncio.to_thread(m.wait_for_checks, "svc", 2, 10.0)
    assert ok
    await asyncio.to_thread(m.close)


def test_restart_after_stop_keeps_state_and_checks_again(
    server: LiveServer, monitor: DeploymentHealthMonitor
) -> None:
    monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    monitor.start_monitoring()
    assert monitor.wait_for_checks("svc", 3)
    monitor.stop_monitoring()
    before = monitor.get_deployment_status("svc")["total_checks"]
    assert monitor.get_deployment_status("svc")["monitoring_active"] is False
    monitor.start_monitoring()
    assert monitor.wait_for_checks("svc", 3)
    after = monitor.get_deployment_status("svc")
    assert after["total_checks"] >= before + 3 and after["health_status"] == "healthy"
    assert len(monitor.get_health_history("svc")) == after["total_checks"]


def test_engine_stats(server: LiveServer, monitor: DeploymentHealthMonitor) -> None:
    monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
    monitor.start_monitoring()
    assert monitor.wait_for_checks("svc", 5)
    s = monitor.engine_stats()
    assert s["running"] and s["deployments"] == 1 and s["checks_done"] >= 5
    assert s["lateness_p99_ms"] is not None and s["lateness_p99_ms"] >= 0


if os.name != "posix":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX only")
