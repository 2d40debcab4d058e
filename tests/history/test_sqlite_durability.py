"""SQLiteStore across process death: ``kill -9`` loses at most the last flush interval."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from tests.support.wait import poll

FLUSH_INTERVAL = 0.2

WRITER = """
import sys, threading, time
from crackseg.utils.deployment.models import DeploymentMetadata, HealthCheckResult
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore


path, mode, flush_interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
# A batch size never reached: only the flush interval commits.
store = SQLiteStore(path, flush_interval=flush_interval, batch_size=1_000_000)
meta = DeploymentMetadata("rollout-1", "model-v2", "canary")
meta.set_state("in_progress", "started")
meta.set_state("health_checking")
store.save_deployment(meta)
store.flush()
print("saved", flush=True)
tick = threading.Event()
n = 0
while mode == "forever" or n < 5000:
    store.add_health("api", HealthCheckResult(True, "healthy", 1.0, time.time(), None, {"n": n}))
    n += 1
    if mode == "forever":
        tick.wait(0.002)
if mode == "exit":
    print("exiting", n, flush=True)
    sys.exit(0)  # without close(): the atexit hook must commit the queue
store.close()
print("closed", n, flush=True)
"""


def _rows(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM health").fetchone()[0])
    except sqlite3.OperationalError:  # schema not created yet
        return 0
    finally:
        conn.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    started: list[subprocess.Popen[str]] = []

    def start(mode: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "h.db"), mode, str(FLUSH_INTERVAL)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "saved"
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        if p.stdout is not None:
            p.stdout.close()


def test_kill_9_loses_at_most_the_last_flush_interval(
    tmp_path: Path, spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    db = tmp_path / "h.db"
    proc = spawn("forever")
    assert poll(lambda: _rows(db) >= 100, 30), "the writer never committed"
    visible = _rows(db)
    killed_at = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    store = SQLiteStore(db)
    try:
        rows = store.health_history("api")
        ns = [r.details["n"] for r in rows]
        assert len(rows) >= visible
        assert ns == list(range(len(ns)))  # nothing lost in the middle, in order
        # Committed at most FLUSH_INTERVAL before the kill (generous slack for a busy machine).
        assert rows[-1].timestamp >= killed_at - FLUSH_INTERVAL - 1.0
        (rec,) = store.deployment_records()
        assert rec.deployment_id == "rollout-1"
        assert [c.state for c in rec.state_history] == ["in_progress", "health_checking"]
        # The reopened store keeps writing after the old history.
        store.add_health("api", rows[-1])
        store.flush()
        assert len(store.health_history("api")) == len(rows) + 1
    finally:
        store.close()


def test_clean_close_loses_nothing_and_records_survive_restart(
    tmp_path: Path, spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    proc = spawn("5000")
    assert proc.stdout is not None
    assert proc.stdout.readline().split() == ["closed", "5000"]
    assert proc.wait(timeout=30) == 0
    store = SQLiteStore(tmp_path / "h.db")
    try:
        ns = [r.details["n"] for r in store.health_history("api")]
        assert ns == list(range(5000))
        assert [m.state for m in store.deployment_records("model-v2")] == ["health_checking"]
    finally:
        store.close()
    assert not (tmp_path / "h.db-wal").exists() or (tmp_path / "h.db-wal").stat().st_size == 0


def test_exit_without_close_still_commits(
    tmp_path: Path, spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    proc = spawn("exit")
    assert proc.stdout is not None
    assert proc.stdout.readline().split() == ["exiting", "5000"]
    assert proc.wait(timeout=30) == 0
    store = SQLiteStore(tmp_path / "h.db")
    try:
        assert len(store.health_history("api")) == 5000
    finally:
        store.close()
