"""Range charts from the SQLite rollups: the same buckets as from the health rows (counts,
shares, min, max and mean to rounding, percentiles within the histogram's ~4%), over HTTP,
after a restart, after an upgrade from a file without rollups, after ``kill -9`` and after
retention, on a real SQLite file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.service.web.ranges import downsample, health_points, window
from tests.support.page_rig import page_rig
from tests.support.wait import poll

EXACT = ("t", "count", "min", "max", "up", "degraded", "down")


def _raw(store: SQLiteStore, dep: str, name: str, end: float) -> dict[str, list[Any]]:
    first, last, width = window(name, end)
    since, until = first * width, (last + 1) * width
    ts, rt, st = health_points(store, dep, since, until - 1e-6)
    return downsample(ts, rt, st, since, until, last + 1 - first)


def _rolled(store: SQLiteStore, dep: str, name: str, end: float) -> dict[str, list[Any]]:
    first, last, width = window(name, end)
    cols = store.health_buckets(dep, first * width, width, last + 1 - first)
    assert cols is not None, f"{name} is not answered from rollups"
    return cols


def _assert_same(got: dict[str, list[Any]], want: dict[str, list[Any]]) -> None:
    assert sum(want["count"]) > 0, "nothing to compare"
    for key in EXACT:
        assert got[key] == want[key], key
    assert got["mean"] == [pytest.approx(m, abs=2e-3) if m is not None else None
                           for m in want["mean"]]  # fmt: skip
    for key in ("p50", "p95", "p99"):
        for g, w in zip(got[key], want[key], strict=True):
            assert (g is None) == (w is None), key
            if w is not None:
                assert g == pytest.approx(w, rel=0.05), key


def _write(store: SQLiteStore, dep: str, start: float, n: int, every: float) -> None:
    for i in range(n):
        status = "unhealthy" if i % 97 == 0 else "degraded" if i % 31 == 0 else "healthy"
        rt = float("inf") if i % 211 == 0 else 0.5 + (i * 7919 % 1000) ** 1.3 / 10
        store.add_health(dep, HealthCheckResult(status == "healthy", status, rt, start + i * every))
    store.flush()


def test_the_range_endpoint_answers_from_rollups_as_from_rows(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        rig.add("api", "/ok", check_interval=3600.0, checks=1)
        now = time.time()
        rig.backfill("api", now - 8 * 86_400, now - 60, every=20.0)
        for name in ("24h", "7d", "30d"):
            r = requests.get(
                f"{rig.server.url}/api/v1/deployments/api/range?range={name}&until={now}",
                timeout=30,
            )
            assert r.status_code == 200, r.text
            body = r.json()
            _assert_same(body["buckets"], _raw(rig.store, "api", name, now))
            first, last, width = window(name, now)
            assert (body["since"], body["until"]) == (first * width, (last + 1) * width)
        # The cached path (no until) agrees too.
        r = requests.get(f"{rig.server.url}/api/v1/deployments/api/range?range=7d", timeout=30)
        body = r.json()
        _assert_same(body["buckets"], _raw(rig.store, "api", "7d", body["until"] - 1))


def test_rollups_survive_a_restart_and_are_rebuilt_for_an_old_file(tmp_path: Path) -> None:
    db, end = tmp_path / "h.db", 1_800_000_000.0
    store = SQLiteStore(db, flush_interval=0.1)
    try:
        _write(store, "api", end - 3 * 86_400, 20_000, 12.9)
        _write(store, "web", end - 86_400, 3_000, 28.0)
        before = {name: _rolled(store, "api", name, end) for name in ("24h", "7d")}
    finally:
        store.close()
    store = SQLiteStore(db)
    try:
        for name in ("24h", "7d"):
            assert _rolled(store, "api", name, end) == before[name]
            _assert_same(before[name], _raw(store, "api", name, end))
    finally:
        store.close()
    # A file from before the rollups (schema 1): they are made from its rows when it opens.
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE health_rollup")
    conn.execute("PRAGMA user_version=1")
    conn.close()
    store = SQLiteStore(db)
    try:
        for dep, name in (("api", "24h"), ("api", "7d"), ("web", "24h")):
            _assert_same(_rolled(store, dep, name, end), _raw(store, dep, name, end))
        assert _rolled(store, "api", "7d", end) == before["7d"]
    finally:
        store.close()


WRITER = """
import sys, time
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import HealthCheckResult
store = SQLiteStore(sys.argv[1], flush_interval=0.05, batch_size=1_000_000)
start, i = 1_800_000_000.0, 0
print("ready", flush=True)
while True:
    st = "unhealthy" if i % 13 == 0 else "healthy"
    store.add_health("api", HealthCheckResult(st == "healthy", st, 1.0 + i % 300, start + i * 3.7))
    i += 1
    if i % 200 == 0:
        time.sleep(0.001)
"""


def test_after_kill_9_rollups_hold_exactly_the_committed_rows(tmp_path: Path) -> None:
    db, script = tmp_path / "h.db", tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"

        def committed() -> int:
            conn = sqlite3.connect(db, timeout=10)
            try:
                return int(conn.execute("SELECT count(*) FROM health").fetchone()[0])
            finally:
                conn.close()

        assert poll(lambda: committed() >= 20_000, 60), "the writer never committed enough"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    store = SQLiteStore(db)
    try:
        ts, _, _ = store.health_points("api")
        end = ts[-1]
        for name in ("24h", "7d"):
            got, want = _rolled(store, "api", name, end), _raw(store, "api", name, end)
            _assert_same(got, want)
        assert sum(_rolled(store, "api", "7d", end)["count"]) == len(ts)
    finally:
        store.close()


def test_retention_prunes_rollups_with_the_rows(tmp_path: Path) -> None:
    end = time.time()
    store = SQLiteStore(
        tmp_path / "h.db", flush_interval=0.1, max_rows_per_deployment=5_000,
        max_age_seconds=2 * 86_400, prune_interval=3600.0,
    )  # fmt: skip
    try:
        _write(store, "api", end - 3 * 86_400, 8_900, 29.0)  # 3 days, beyond both bounds
        store.prune()
        ts, _, _ = store.health_points("api")
        assert len(ts) == 5_000 and ts[0] >= end - 2 * 86_400
        got = _rolled(store, "api", "7d", end)
        assert sum(got["count"]) == 5_000
        _assert_same(got, _raw(store, "api", "7d", end))
        _assert_same(_rolled(store, "api", "24h", end), _raw(store, "api", "24h", end))
    finally:
        store.close()
