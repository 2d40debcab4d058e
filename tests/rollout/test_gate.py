"""The four verdicts and what judges them: router log reading, sources in order, probes-only said."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.errors import RouterError
from crackseg.utils.deployment.orchestration import (
    DeploymentConfig,
    DeploymentOrchestrator,
    PerformanceMonitor,
    Verdict,
)
from crackseg.utils.deployment.rollout.gate import AnalysisCriteria, judge_analysis
from crackseg.utils.deployment.rollout.routers.base import TrafficStats
from crackseg.utils.deployment.rollout.routers.callback import CallbackRouter
from crackseg.utils.deployment.rollout.routers.nginx_log import AccessLogReader
from tests.support.runtime import sample_target
from tests.support.wait import wait_until


def _line(ts: float, addr: str, status: str = "200", ms: str = "0.002") -> str:
    return f"{ts:.3f}|{addr}|{status}|{ms}|{status}\n"


def test_access_log_reader_follows_appends_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    reader = AccessLogReader(log, max_attempts=100)
    assert reader.measure(["a:1"], 0).requests == 0  # no file yet: no traffic, no error
    now = time.time()
    with log.open("a") as f:
        f.write(_line(now, "a:1") + _line(now, "a:1", "500"))
        f.write(f"{now:.3f}|a:1, b:2|502, 200|0.001, 0.003|200\n")
        f.write(f"{now:.3f}|a:1|20")  # a partial line: read once complete
    stats = reader.measure(["a:1"], now - 1)
    assert (stats.requests, stats.errors) == (3, 2)
    assert reader.measure(["b:2"], now - 1).requests == 1
    with log.open("a") as f:
        f.write("0|0.001|200\n")
    assert reader.measure(["a:1"], now - 1).requests == 4
    # Rotation: renamed away, a new file; lines appended to the old one first are not lost.
    os.replace(log, tmp_path / "access.log.1")
    with (tmp_path / "access.log.1").open("a") as f:
        f.write(_line(now, "a:1", "503"))
    log.write_text(_line(now, "a:1"))
    stats = reader.measure(["a:1"], now - 1)
    assert (stats.requests, stats.errors) == (6, 3)
    # Truncated in place (copytruncate): read from the start again.
    log.write_text("")
    assert reader.poll() == 0
    with log.open("a") as f:
        f.write(_line(now, "c:3"))
    assert reader.measure(["c:3"], now - 1).requests == 1
    assert reader.measure(["a:1"], now + 10).requests == 0  # the window bounds it
    # Bounded: at most max_attempts per backend.
    with log.open("a") as f:
        f.writelines(_line(now, "c:3") for _ in range(300))
    assert reader.measure(["c:3"], 0).requests == 100
    reader.close()
    # And in all: the least recently seen backend gives way first.
    capped = AccessLogReader(log, max_attempts=100, max_total=150)
    with log.open("a") as f:
        f.writelines(_line(now, "d:4") for _ in range(100))
        f.writelines(_line(now, "e:5") for _ in range(100))
    assert capped.measure(["e:5"], 0).requests == 100
    assert capped.measure(["d:4"], 0).requests + capped.measure(["c:3"], 0).requests == 50
    capped.close()


def test_a_broken_measurement_is_an_error_never_a_pass() -> None:
    crit = AnalysisCriteria(min_samples=5)

    def broken(since: float) -> TrafficStats:
        raise RouterError("cannot read the nginx access log")

    pm = PerformanceMonitor(traffic=broken)
    for _ in range(10):
        from crackseg.utils.deployment.models import HealthCheckResult

        pm.record_probe(HealthCheckResult(True, "healthy", 1.0))
    snap = pm.snapshot(min_samples=5)
    assert snap.source == "router" and snap.error and not snap.enough_data
    g = judge_analysis(snap, None, crit)
    assert g.verdict is Verdict.ERROR and "access log" in g.reason
    # Metrics configured and failing: an error too, not the probes' pass.
    dead = PerformanceMonitor(["http://127.0.0.1:9/metrics"], timeout=0.5)
    dead.record_probe(HealthCheckResult(True, "healthy", 1.0))
    assert not dead.scrape()
    assert judge_analysis(dead.snapshot(min_samples=1), None, crit).verdict is Verdict.ERROR
    # No request at all through the router: judged on probes, and said so.
    idle = PerformanceMonitor(traffic=lambda since: TrafficStats(0, 0, 1.0))
    for _ in range(5):
        idle.record_probe(HealthCheckResult(True, "healthy", 1.0))
    g = judge_analysis(idle.snapshot(min_samples=5), None, crit)
    assert g.passed and "judged on health probes only" in g.reason
    # Few requests: inconclusive (wait), never a pass on probes.
    few = PerformanceMonitor(traffic=lambda since: TrafficStats(3, 0, 1.0, 1.0, 2.0, 2.0))
    assert judge_analysis(few.snapshot(min_samples=5), None, crit).verdict is Verdict.INCONCLUSIVE


class Collect(AlertHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def send_alert(self, alert_type: str, metadata: Any, **kw: Any) -> bool:
        self.events.append((alert_type, str(kw.get("message", ""))))
        return True


def test_where_nothing_measures_traffic_the_record_and_event_say_probes_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "crackseg.utils.deployment.orchestration")
    handler = Collect()
    with (
        sample_target(tmp_path) as target,
        DeploymentOrchestrator(router=CallbackRouter(), target=target) as orch,
    ):
        orch.add_alert_handler(handler)
        config = DeploymentConfig(
            "m", "prod", version="v1", check_interval=0.05, bake_seconds=0.5, min_samples=5
        )
        result = orch.deploy_with_strategy(config, "blue_green")
        assert result.success, result.error_message
        assert result.metadata is not None
        assert "nothing measures real traffic" in result.metadata.extra["judged_on_probes_only"]
        wait_until(lambda: any(t == "deployment_success" for t, _ in handler.events), 5.0)
        message = next(m for t, m in handler.events if t == "deployment_success")
        assert "judged on health probes only" in message
        # A library deploy tells its steps at INFO: the switch, the gate verdicts, the state.
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert any("traffic v1@" in m for m in logged), logged
        assert any("bake gate passed" in m for m in logged), logged
        assert any(": success (v1 serves prod" in m for m in logged), logged


def test_a_later_deployment_ends_the_guard_of_the_last_one(tmp_path: Path) -> None:
    with (
        sample_target(tmp_path) as target,
        DeploymentOrchestrator(router=CallbackRouter(), target=target) as orch,
    ):
        common = dict(check_interval=0.1, bake_seconds=0.2, min_samples=1, keep_old_seconds=0.0)
        for version, guard in (("v1", 0.0), ("v2", 60.0), ("v3", 0.0)):
            result = orch.deploy_with_strategy(
                DeploymentConfig("m", "prod", version=version, guard_seconds=guard, **common),
                "blue_green",
            )
            assert result.success, result.error_message
            if version == "v2":
                v2 = result.deployment_id
                assert result.metadata is not None
                assert result.metadata.extra["guard"]["state"] == "watching"
        record = orch.get_deployment_status(v2)
        assert record is not None and record.extra["guard"]["state"] == "stopped"
        assert record.state == "success"


@pytest.mark.parametrize(
    ("field", "value"), [("consecutive_error_limit", 0), ("guard_seconds", -1)]
)
def test_new_knobs_are_validated(field: str, value: Any) -> None:
    from crackseg.utils.deployment.errors import ConfigError

    with pytest.raises(ConfigError, match=field):
        DeploymentConfig("m", "prod", **{field: value})
