"""Rollouts in flight, written at every step, so that a crash of the process running one
can be undone by the next process that opens the same file.

One row per running rollout (its step, weights, instances with their PIDs, the previous
version), in its own table of the history's SQLite file, written synchronously (WAL: a
committed step survives kill -9 of the writer). A row is deleted once its rollout ends; a
row found at start is an interrupted rollout (Argo Rollouts reconciles from persisted state
the same way).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

from crackseg.utils.deployment.errors import StoreError

__all__ = ["RolloutStateStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts_in_flight (
    deployment_id TEXT PRIMARY KEY, environment TEXT NOT NULL, owner_pid INTEGER NOT NULL,
    updated REAL NOT NULL, data BLOB NOT NULL
);
"""


class RolloutStateStore:
    """The in-flight rollouts of one SQLite file. Thread-safe.

    ``owner_pid`` marks the process running each rollout: :meth:`interrupted` returns only
    rollouts whose owner is gone, so two programs sharing a file do not undo each other.
    """

    def __init__(self, path: str | Path, *, timeout: float = 5.0) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"rollout state in {self.path}: {exc}") from exc

    def save(self, deployment_id: str, environment: str, data: dict[str, Any]) -> None:
        """Record the rollout's current step (an upsert, committed before it returns)."""
        blob = orjson.dumps(data, default=str)
        with self._lock:
            self._conn.execute(
                "INSERT INTO rollouts_in_flight (deployment_id, environment, owner_pid, updated,"
                " data) VALUES (?,?,?,?,?) ON CONFLICT (deployment_id) DO UPDATE SET"
                " environment = excluded.environment, owner_pid = excluded.owner_pid,"
                " updated = excluded.updated, data = excluded.data",
                (deployment_id, environment, _own_pid(), time.time(), blob),
            )
            self._conn.commit()

    def finish(self, deployment_id: str) -> None:
        """The rollout ended (served, rolled back or failed): nothing left to undo."""
        with self._lock:
            self._conn.execute(
                "DELETE FROM rollouts_in_flight WHERE deployment_id = ?", (deployment_id,)
            )
            self._conn.commit()

    def in_flight(self) -> list[dict[str, Any]]:
        """Every recorded rollout, its process alive or not, oldest first."""
        return [data for _, data in self._rows()]

    def interrupted(self) -> list[dict[str, Any]]:
        """Rollouts whose process is gone, oldest first."""
        return [data for owner, data in self._rows() if not _alive(owner)]

    def _rows(self) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT owner_pid, data FROM rollouts_in_flight ORDER BY updated"
            ).fetchall()
        return [(int(owner), orjson.loads(data)) for owner, data in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _own_pid() -> int:
    return os.getpid()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another orchestrator of this very process runs it
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
