"""A durable outbox: notifications survive a crash until a receiver has them.

:class:`~.notifiers.base.AlertDispatcher` writes one row per (notification, handler) here
before it queues the delivery, deletes the row once the handler succeeded and marks it
dead when it gives up. A process killed with ``kill -9`` loses nothing: the next dispatcher
on the same file re-queues every pending row of a handler when that handler (same ``key``)
is added again. Delivery is therefore at-least-once; receivers dedupe on ``event_id``.

The file is SQLite in WAL mode with ``synchronous=NORMAL``: a commit survives the death of
the process (not necessarily a power cut), at the price of no fsync per notification.

>>> box = Outbox(":memory:")
>>> rid = box.add([OutboxEntry("webhook-0", "api", "health_check_failed", {}, {}, "e1", 1)])[0]
>>> [e.event_id for e in box.pending("webhook-0")]
['e1']
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crackseg.utils.deployment.errors import StoreError

__all__ = ["CHECKPOINT_EVERY", "WAL_SIZE_LIMIT", "Outbox", "OutboxEntry"]

logger = logging.getLogger("crackseg.utils.deployment.alerts")

#: Bytes the WAL file is cut back to once checkpointed (it is reused, not regrown).
WAL_SIZE_LIMIT = 4 * 1024 * 1024
#: Writes by delivery threads (deliveries, failed tries) between two WAL checkpoints.
CHECKPOINT_EVERY = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handler_key TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    alert_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    event_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (handler_key, dead_at, id);
CREATE TABLE IF NOT EXISTS outbox_sequence (
    deployment_id TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
"""


@dataclass
class OutboxEntry:
    """One notification for one handler, as stored. ``row_id`` is set once stored."""

    handler_key: str
    deployment_id: str
    alert_type: str
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    event_id: str
    sequence: int
    created_at: float = field(default_factory=time.time)
    attempts: int = 0
    last_error: str | None = None
    dead_at: float | None = None
    row_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the metadata body: what a status page shows of a dead letter."""
        return {
            "id": self.row_id,
            "handler_key": self.handler_key,
            "deployment_id": self.deployment_id,
            "alert_type": self.alert_type,
            "state": self.kwargs.get("state"),
            "event_id": self.event_id,
            "sequence": self.sequence,
            "created_at": self.created_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "dead_at": self.dead_at,
        }


def _dumps(value: Any) -> str:
    # default=str: a kwarg that is not JSON (an enum, a datetime) is kept as its text.
    return json.dumps(value, default=str, separators=(",", ":"))


class Outbox:
    """Undelivered and dead notifications in one SQLite file. Thread-safe.

    ``path`` may be ``":memory:"`` (tests; nothing survives). Raises :class:`StoreError`
    when the file cannot be opened or written.
    """

    def __init__(self, path: str | Path, *, dead_limit: int = 1000) -> None:
        self.path = str(path)
        self.dead_limit = dead_limit
        self._lock = threading.Lock()
        self._ckpt_lock = threading.Lock()
        self._writes = 0
        self._ckpt: sqlite3.Connection | None = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            # Checkpoints fsync; run them from the delivery side on a connection of their
            # own, so dispatch (on the monitor's loop) never waits for one.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            if self.path != ":memory:":
                self._ckpt = sqlite3.connect(self.path, check_same_thread=False)
                self._ckpt.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open outbox {self.path}: {exc}") from exc

    def _run(self, fn: Any) -> Any:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return out
            except sqlite3.Error as exc:
                raise StoreError(f"outbox {self.path}: {exc}") from exc

    @staticmethod
    def _bump(db: sqlite3.Connection, deployment_id: str) -> int:
        row = db.execute(
            "INSERT INTO outbox_sequence (deployment_id, last) VALUES (?, 1) "
            "ON CONFLICT(deployment_id) DO UPDATE SET last = last + 1 RETURNING last",
            (deployment_id,),
        ).fetchone()
        return int(row[0])

    def next_sequence(self, deployment_id: str) -> int:
        """The next number of ``deployment_id``'s notifications: 1, 2, ... across restarts."""
        result: int = self._run(lambda db: self._bump(db, deployment_id))
        return result

    def add(self, entries: list[OutboxEntry], *, number: bool = False) -> list[int]:
        """Store ``entries`` in one transaction; sets and returns their row ids.

        With ``number``, the entries (one notification for several handlers, so one
        deployment) first get the deployment's next sequence number, in ``sequence`` and
        in ``kwargs["sequence"]``, within the same transaction.
        """

        def op(db: sqlite3.Connection) -> list[int]:
            if number and entries:
                seq = self._bump(db, entries[0].deployment_id)
                for e in entries:
                    e.sequence = seq
                    e.kwargs["sequence"] = seq
            ids = []
            for e in entries:
                cur = db.execute(
                    "INSERT INTO outbox (handler_key, deployment_id, alert_type, metadata, kwargs,"
                    " event_id, sequence, created_at, attempts) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        e.handler_key,
                        e.deployment_id,
                        e.alert_type,
                        _dumps(e.metadata),
                        _dumps(e.kwargs),
                        e.event_id,
                        e.sequence,
                        e.created_at,
                        e.attempts,
                    ),
                )
                e.row_id = int(cur.lastrowid or 0)
                ids.append(e.row_id)
            return ids

        result: list[int] = self._run(op)
        return result

    def delete(self, row_id: int) -> None:
        """Forget one row: delivered, dropped, or its handler removed."""
        self._run(lambda db: db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)))
        self._delivery_write()

    def _delivery_write(self) -> None:
        # Called from delivery threads only: they, not dispatch, pay for the checkpoints.
        self._writes += 1
        if self._writes % CHECKPOINT_EVERY == 0:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL back into the file (PASSIVE: never blocks writers); skips if busy."""
        if self._ckpt is None or not self._ckpt_lock.acquire(blocking=False):
            return
        try:
            self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # The next one will do; a WAL that grows a little harms nothing.
            logger.debug("outbox checkpoint skipped: %s", exc)
        finally:
            self._ckpt_lock.release()

    def delete_handler(self, handler_key: str) -> int:
        """Forget every pending row of a handler that was removed; returns how many."""
        cur = self._run(
            lambda db: db.execute(
                "DELETE FROM outbox WHERE handler_key = ? AND dead_at IS NULL", (handler_key,)
            )
        )
        return int(cur.rowcount)

    def record_attempt(self, row_id: int, attempts: int, error: str | None) -> None:
        """Remember a failed try, so a restart does not start counting from zero."""
        self._run(
            lambda db: db.execute(
                "UPDATE outbox SET attempts = ?, last_error = ? WHERE id = ?",
                (attempts, error, row_id),
            )
        )
        self._delivery_write()

    def mark_dead(self, row_id: int, attempts: int, error: str | None, now: float) -> None:
        """Move a row to the dead letters, keeping only the newest ``dead_limit`` of them."""

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET attempts = ?, last_error = ?, dead_at = ? WHERE id = ?",
                (attempts, error, now, row_id),
            )
            db.execute(
                "DELETE FROM outbox WHERE dead_at IS NOT NULL AND id NOT IN "
                "(SELECT id FROM outbox WHERE dead_at IS NOT NULL ORDER BY id DESC LIMIT ?)",
                (self.dead_limit,),
            )

        self._run(op)
        self._delivery_write()

    def revive(self, row_id: int) -> None:
        """Make a dead letter pending again, with its attempts reset."""
        self._run(
            lambda db: db.execute(
                "UPDATE outbox SET dead_at = NULL, attempts = 0 WHERE id = ?", (row_id,)
            )
        )

    def _select(self, where: str, args: tuple[Any, ...]) -> list[OutboxEntry]:
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT id, handler_key, deployment_id, alert_type, metadata, kwargs, event_id,"
                    f" sequence, created_at, attempts, last_error, dead_at FROM outbox WHERE {where}",
                    args,
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"outbox {self.path}: {exc}") from exc
        return [
            OutboxEntry(
                handler_key=r[1],
                deployment_id=r[2],
                alert_type=r[3],
                metadata=json.loads(r[4]),
                kwargs=json.loads(r[5]),
                event_id=r[6],
                sequence=r[7],
                created_at=r[8],
                attempts=r[9],
                last_error=r[10],
                dead_at=r[11],
                row_id=r[0],
            )
            for r in rows
        ]

    def pending(self, handler_key: str | None = None) -> list[OutboxEntry]:
        """Undelivered rows (of one handler, or all), oldest first."""
        if handler_key is None:
            return self._select("dead_at IS NULL ORDER BY id", ())
        return self._select("handler_key = ? AND dead_at IS NULL ORDER BY id", (handler_key,))

    def dead(self, limit: int = 100) -> list[OutboxEntry]:
        """The newest dead letters, newest first."""
        return self._select("dead_at IS NOT NULL ORDER BY id DESC LIMIT ?", (limit,))

    def counts(self) -> dict[str, int]:
        """``{"pending": n, "dead": m}`` over all handlers."""
        with self._lock:
            row = self._db.execute(
                "SELECT SUM(dead_at IS NULL), SUM(dead_at IS NOT NULL) FROM outbox"
            ).fetchone()
        return {"pending": int(row[0] or 0), "dead": int(row[1] or 0)}

    def close(self) -> None:
        """Close the file. Safe to call twice."""
        with self._lock, self._ckpt_lock, contextlib.suppress(sqlite3.Error):
            self._db.close()
            if self._ckpt is not None:
                self._ckpt.close()
