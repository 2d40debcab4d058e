"""MemoryStore: bounded, windowed, and frugal with repeated values."""

from __future__ import annotations

from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.models import (
    AlertEvent,
    DeploymentMetadata,
    HealthCheckResult,
    ResourceMetrics,
)


def test_satisfies_the_store_interface() -> None:
    assert isinstance(MemoryStore(), HistoryStore)


def test_bounded_and_windowed() -> None:
    s = MemoryStore(max_history=5, max_alerts=3)
    for i in range(10):
        s.add_health("d", HealthCheckResult(True, "healthy", 1.0, timestamp=100.0 + i))
        s.add_alert(AlertEvent("d", "x", "warning", "firing", "m", None, None, 0.0, 100.0 + i))
    assert [r.timestamp for r in s.health_history("d")] == [105, 106, 107, 108, 109]
    assert [r.timestamp for r in s.health_history("d", since=106, until=108)] == [106, 107, 108]
    assert [r.timestamp for r in s.health_history("d", limit=2)] == [108, 109]
    assert s.health_history("d", limit=0) == []
    assert [a.timestamp for a in s.alert_history()] == [107, 108, 109]
    assert s.health_history("unknown") == []


def test_a_reserved_history_reads_empty_then_fills_like_any_other() -> None:
    s = MemoryStore(max_history=3)
    s.reserve("d")
    assert s.health_history("d") == []
    assert s.health_history("d", since=0, limit=5) == []
    assert s._health_history_json("d") == b"[]"
    for i in range(5):
        s.add_health("d", HealthCheckResult(True, "healthy", 1.0 + i, timestamp=100.0 + i))
    s.reserve("d")  # reserving again keeps what is there
    assert [r.response_time_ms for r in s.health_history("d")] == [3.0, 4.0, 5.0]
    s.forget("d")
    assert s.health_history("d") == []


def test_repeated_details_and_pids_are_shared() -> None:
    s = MemoryStore()
    for i in range(3):
        s.add_health("d", HealthCheckResult(True, "healthy", 1.0, details={"http_status": 200}))
        s.add_resource("d", ResourceMetrics(1.0, 2.0, 3.0, 4.0, pids=tuple([10, 11 + i // 2])))
    h = s.health_history("d")
    assert h[0].details is h[1].details is h[2].details == {"http_status": 200}
    r = s.resource_history("d")
    assert r[0].pids is r[1].pids and r[2].pids == (10, 12) and r[2].pids is not r[1].pids


def test_deployment_records_upsert_in_start_order() -> None:
    s = MemoryStore()
    a = DeploymentMetadata("a", artifact_id="m", start_time=2.0)
    b = DeploymentMetadata("b", artifact_id="n", start_time=1.0)
    s.save_deployment(a)
    s.save_deployment(b)
    a.set_state("success", "gate passed")
    s.save_deployment(a)
    assert [m.deployment_id for m in s.deployment_records()] == ["b", "a"]
    assert [m.deployment_id for m in s.deployment_records("m")] == ["a"]
    assert s.deployment_records("m")[0].state_history[-1].reason == "gate passed"
