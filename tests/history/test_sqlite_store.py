"""SQLiteStore on real SQLite files: queries, queueing, retention, concurrency, lifecycle."""

from __future__ import annotations

import inspect
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.errors import ConfigError, StoreError
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import (
    AlertEvent,
    DeploymentMetadata,
    HealthCheckResult,
    ResourceMetrics,
)
from tests.support.wait import poll


def _count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


@pytest.fixture
def make(db: Path) -> Iterator[Callable[..., SQLiteStore]]:
    stores: list[SQLiteStore] = []

    def factory(**kw: object) -> SQLiteStore:
        s = SQLiteStore(db, **kw)  # type: ignore[arg-type]
        stores.append(s)
        return s

    yield factory
    for s in stores:
        s.close()


def _h(i: float, dep_status: str = "healthy", **kw: object) -> HealthCheckResult:
    return HealthCheckResult(
        success=dep_status == "healthy",
        status=dep_status,
        response_time_ms=float(i),
        timestamp=float(i),
        **kw,  # type: ignore[arg-type]
    )


def _alert(dep: str, ts: float, suppressed_reason: str | None = None) -> AlertEvent:
    a = AlertEvent(dep, "high_cpu_usage", "warning", "firing", "cpu high", 95.0, 90.0, ts, ts)
    a.suppressed_reason = suppressed_reason
    return a


def test_implements_the_protocol_with_memorystore_signatures(
    make: Callable[..., SQLiteStore],
) -> None:
    store = make()
    assert isinstance(store, HistoryStore)
    for name, member in inspect.getmembers(MemoryStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        assert inspect.signature(getattr(SQLiteStore, name)) == inspect.signature(member), name


def test_round_trip_of_every_kind(make: Callable[..., SQLiteStore]) -> None:
    store = make()
    h1 = HealthCheckResult(True, "healthy", 12.5, 100.0, None, {"http_status": 200, "x": [1, "a"]})
    h2 = HealthCheckResult(False, "unhealthy", 0.0, 101.0, "connection refused", {})
    h3 = HealthCheckResult(False, "some-custom-status", 3.0, 102.0)
    r1 = ResourceMetrics(12.5, 300.25, 40.0, 1.5, 100.0, "gunicorn", 3, (10, 11, 12))
    r2 = ResourceMetrics(1.0, 2.0, 3.0, 0.0, 101.0)
    a1 = _alert("api", 100.0, suppressed_reason="maintenance")
    a2 = AlertEvent(
        "web",
        "process_not_running",
        "critical",
        "resolved",
        "back",
        None,
        None,
        90.0,
        110.0,
        110.0,
        True,
    )
    for h in (h1, h2, h3):
        store.add_health("api", h)
    store.add_resource("api", r1)
    store.add_resource("api", r2)
    store.add_alert(a1)
    store.add_alert(a2)
    meta = DeploymentMetadata("d-1", "model-v2", "canary", target_environment="prod")
    meta.set_state("in_progress", "started")
    meta.extra["weights"] = [10, 50, 100]
    store.save_deployment(meta)
    store.flush()
    assert store.health_history("api") == [h1, h2, h3]
    assert store.resource_history("api") == [r1, r2]
    assert store.alert_history() == [a1, a2]
    assert store.alert_history("web") == [a2]
    assert store.deployment_records() == [meta]
    assert store.health_history("nobody") == []


def test_time_ranges_and_limits_match_memorystore(make: Callable[..., SQLiteStore]) -> None:
    store, mem = make(), MemoryStore(max_history=10_000)
    for i in range(100):
        for s in (store, mem):
            s.add_health("a", _h(i))
            s.add_health("b", _h(i + 0.5, "degraded"))
            s.add_resource("a", ResourceMetrics(i, i, i, i, float(i)))
            s.add_alert(_alert("a" if i % 2 else "b", float(i)))
    store.flush()
    cases: list[tuple[float | None, float | None, int | None]] = [
        (None, None, None),
        (10, 20, None),
        (None, None, 5),
        (50, None, 3),
        (None, 30, 4),
        (None, None, 0),
        (1000, None, None),
    ]
    for q in cases:
        assert store.health_history("a", *q) == mem.health_history("a", *q), q
        assert store.health_history("b", *q) == mem.health_history("b", *q), q
        assert store.resource_history("a", *q) == mem.resource_history("a", *q), q
    got = store.health_history("a", limit=5)
    assert [r.timestamp for r in got] == [95, 96, 97, 98, 99]  # newest 5, oldest first
    assert [r.timestamp for r in store.health_history("a", since=10, until=20)] == list(
        range(10, 21)
    )
    for since, limit in ((None, None), (90.0, None), (None, 3)):
        for dep in (None, "a"):
            assert store.alert_history(dep, since, limit) == mem.alert_history(dep, since, limit)


def test_add_never_waits_on_a_locked_database(db: Path, make: Callable[..., SQLiteStore]) -> None:
    store = make(flush_interval=0.05)
    locker = sqlite3.connect(db, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # the writer now blocks on the disk
        t0 = time.perf_counter()
        for i in range(2000):
            store.add_health("a", _h(i))
        elapsed = time.perf_counter() - t0
        assert elapsed < 1.0, elapsed  # ~µs each; a disk wait would be seconds
        assert _count(db, "health") == 0  # nothing could be committed meanwhile
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    store.flush()
    assert len(store.health_history("a")) == 2000


def test_full_queue_drops_oldest_samples_never_alerts_or_deployments(
    make: Callable[..., SQLiteStore],
) -> None:
    store = make(flush_interval=60.0, batch_size=10_000, max_queue=10)
    for i in range(100):
        store.add_health("a", _h(i))
    for i in range(30):
        store.add_alert(_alert("a", float(i)))
    store.save_deployment(DeploymentMetadata("d-1", "art"))
    assert store.stats()["dropped"] == 90
    store.flush()
    assert [r.timestamp for r in store.health_history("a")] == [float(i) for i in range(90, 100)]
    assert len(store.alert_history()) == 30
    assert [m.deployment_id for m in store.deployment_records()] == ["d-1"]


def test_deployment_records_read_your_writes_and_upsert(
    db: Path, make: Callable[..., SQLiteStore]
) -> None:
    store = make(flush_interval=60.0)
    meta = DeploymentMetadata("d-1", "model-a", start_time=10.0)
    meta.set_state("in_progress")
    store.save_deployment(meta)
    store.save_deployment(DeploymentMetadata("d-2", "model-b", start_time=5.0))
    # Not committed yet (flush_interval 60 s) but visible, as saved at that moment.
    meta.set_state("success")  # a later mutation is not seen until saved again
    got = store.deployment_records()
    assert [m.deployment_id for m in got] == ["d-2", "d-1"]
    assert got[1].state == "in_progress"
    assert _count(db, "deployments") == 0
    store.save_deployment(meta)
    store.flush()
    assert _count(db, "deployments") == 2
    (rec,) = store.deployment_records("model-a")
    assert rec.state == "success"
    assert [c.state for c in rec.state_history] == ["in_progress", "success"]


def test_commits_every_flush_interval_without_flush(
    db: Path, make: Callable[..., SQLiteStore]
) -> None:
    store = make(flush_interval=0.1, batch_size=10_000)
    for n in range(1, 4):
        # Each row arrives while the writer idles with an empty queue.
        assert poll(lambda: store.stats()["queued"] == 0, 10)
        store.add_health("a", _h(n))
        assert poll(lambda n=n: _count(db, "health") == n, timeout=10)  # type: ignore[misc]


def test_commits_every_batch_size_rows(db: Path, make: Callable[..., SQLiteStore]) -> None:
    store = make(flush_interval=3600.0, batch_size=50)
    for i in range(49):
        store.add_health("a", _h(i))
    store.add_health("a", _h(49))
    assert poll(lambda: _count(db, "health") >= 50, timeout=10)


def test_retention_by_rows_per_deployment(make: Callable[..., SQLiteStore]) -> None:
    store = make(max_rows_per_deployment=20, prune_batch=7)
    for i in range(100):
        store.add_health("a", _h(i))
        store.add_resource("a", ResourceMetrics(0, 0, 0, 0, float(i)))
    for i in range(5):
        store.add_health("b", _h(i))
    store.flush()
    store.prune()
    assert [r.timestamp for r in store.health_history("a")] == [float(i) for i in range(80, 100)]
    assert len(store.resource_history("a")) == 20
    assert len(store.health_history("b")) == 5
    assert store.stats()["pruned"] == 160


def test_retention_by_age_including_alerts(make: Callable[..., SQLiteStore]) -> None:
    store = make(max_age_seconds=100.0)
    now = time.time()
    for i in range(50):
        store.add_health("a", _h(now - 1000 + i))
        store.add_alert(_alert("a", now - 1000 + i))
    for i in range(10):
        store.add_health("a", _h(now + i))
    store.add_alert(_alert("a", now))
    store.flush()
    store.prune()
    assert [r.timestamp for r in store.health_history("a")] == [now + i for i in range(10)]
    assert [a.timestamp for a in store.alert_history()] == [now]


def test_periodic_pruning_runs_by_itself(make: Callable[..., SQLiteStore]) -> None:
    store = make(max_rows_per_deployment=10, prune_interval=0.1, flush_interval=0.05)
    for i in range(200):
        store.add_health(f"d{i % 4}", _h(i))
    assert poll(lambda: all(len(store.health_history(f"d{k}")) == 10 for k in range(4)), 10)


def test_concurrent_writers(make: Callable[..., SQLiteStore]) -> None:
    store = make(flush_interval=0.05, batch_size=500)
    n_threads, per_thread = 8, 1500
    barrier = threading.Barrier(n_threads)

    def writer(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            store.add_health(f"dep-{t % 4}", _h(t * per_thread + i))
            if i % 500 == 0:
                store.add_alert(_alert(f"dep-{t % 4}", float(i)))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    store.flush()
    seen: set[float] = set()
    for k in range(4):
        rows = store.health_history(f"dep-{k}")
        assert len(rows) == 2 * per_thread
        seen.update(r.response_time_ms for r in rows)
    assert seen == {float(i) for i in range(n_threads * per_thread)}
    assert len(store.alert_history()) == n_threads * 3
    assert store.stats()["dropped"] == 0


def test_closed_store_refuses_writes_clearly(make: Callable[..., SQLiteStore]) -> None:
    store = make(flush_interval=60.0)
    store.add_health("a", _h(1))
    store.close()
    store.close()  # idempotent
    store.flush()  # nothing left to flush
    writes: list[Callable[[], None]] = [
        lambda: store.add_health("a", _h(2)),
        lambda: store.add_resource("a", ResourceMetrics(0, 0, 0, 0)),
        lambda: store.add_alert(_alert("a", 1.0)),
        lambda: store.save_deployment(DeploymentMetadata("d")),
    ]
    for write in writes:
        with pytest.raises(StoreError, match=r"closed: cannot write after close\(\)"):
            write()
    with pytest.raises(StoreError, match="closed"):
        store.health_history("a")


def test_forget_keeps_history(make: Callable[..., SQLiteStore]) -> None:
    store = make()
    store.add_health("a", _h(1))
    store.flush()
    store.forget("a")
    assert len(store.health_history("a")) == 1


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open history store"):
        SQLiteStore(tmp_path / "missing-dir" / "x.db")
    with pytest.raises(ConfigError, match="flush_interval"):
        SQLiteStore(tmp_path / "x.db", flush_interval=0)
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SQLiteStore(newer)


def test_wal_mode_and_reopen(db: Path) -> None:
    store = SQLiteStore(db)
    store.add_health("a", _h(1))
    store.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    again = SQLiteStore(db)
    try:
        assert again.health_history("a") == [_h(1)]
    finally:
        again.close()


def test_details_json_cannot_hold_are_stored_as_text(make: Callable[..., SQLiteStore]) -> None:
    store = make()
    store.add_health("a", _h(1, details={"when": object, 7: "seven"}))
    store.flush()
    (row,) = store.health_history("a")
    assert row.details == {"when": str(object), "7": "seven"}
    assert store.stats()["bad_rows"] == 0
