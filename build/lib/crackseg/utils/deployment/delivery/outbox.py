"""A durable outbox: notifications survive a crash until a receiver has them.

:class:`~.dispatcher.AlertDispatcher` has one row per (notification, handler) written here
(by :class:`~.outbox_writer.OutboxWriter`, off the caller's thread), deletes the row once
the handler succeeded and marks it dead when it gives up. A process killed with ``kill -9`` loses nothing: the next dispatcher
on the same file re-queues every pending row of a handler when that handler (same ``key``)
is added again. Delivery is therefore at-least-once; receivers dedupe on ``event_id``.

The file is SQLite in WAL mode with ``synchronous=NORMAL``: a commit survives the death of
the process (not necessarily a power cut), at the price of no fsync per notification.

>>> from crackseg.utils.deployment.models import DeploymentMetadata
>>> box = Outbox(":memory:")
>>> n = Notification("webhook-0", "health_check_failed", DeploymentMetadata("api"),
...                  {"event_id": "e1", "sequence": 1})
>>> box.add([n]) == [n.row_id]
True
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crackseg.utils.deployment.delivery.record import Notification
from crackseg.utils.deployment.errors import StoreError
from crackseg.utils.deployment.history.sqlite.schema import connect

__all__ = ["CHECKPOINT_EVERY", "WAL_SIZE_LIMIT", "Outbox", "OutboxOp"]

#: One write: ``("add" | "delete" | "attempt" | "dead" | "revive" | "sequence",
#: notification)`` or ``("forget", handler_key)``.
OutboxOp = tuple[str, Any]

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
            self._db = connect(self.path, busy_timeout=5.0)
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

    @staticmethod
    def _insert(db: sqlite3.Connection, n: Notification) -> None:
        cur = db.execute(
            "INSERT INTO outbox (handler_key, deployment_id, alert_type, metadata, kwargs,"
            " event_id, sequence, created_at, attempts, last_error, dead_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (n.handler_key, n.deployment_id, n.alert_type, _dumps(n.metadata.to_dict()),
             _dumps(n.kwargs), n.event_id, n.sequence, n.created_at, n.attempts,
             n.last_error, n.dead_at),
        )  # fmt: skip
        n.row_id = int(cur.lastrowid or 0)
        Outbox._keep_sequence(db, n)

    @staticmethod
    def _keep_sequence(db: sqlite3.Connection, n: Notification) -> None:
        db.execute(
            "INSERT INTO outbox_sequence (deployment_id, last) VALUES (?, ?) ON CONFLICT"
            "(deployment_id) DO UPDATE SET last = max(last, excluded.last)",
            (n.deployment_id, n.sequence),
        )

    def add(self, entries: list[Notification], *, number: bool = False) -> list[int]:
        """Store ``entries`` in one transaction; sets and returns their row ids.

        With ``number``, the entries (one notification for several handlers, so one
        deployment) first get the deployment's next sequence number in
        ``kwargs["sequence"]``, within the same transaction.
        """

        def op(db: sqlite3.Connection) -> list[int]:
            if number and entries:
                seq = self._bump(db, entries[0].deployment_id)
                for e in entries:
                    e.kwargs["sequence"] = seq
            for e in entries:
                self._insert(db, e)
            return [int(e.row_id or 0) for e in entries]

        result: list[int] = self._run(op)
        return result

    def apply(self, ops: Sequence[OutboxOp]) -> None:
        """Apply writes in one transaction, in order (see :data:`OutboxOp`)."""

        def run(db: sqlite3.Connection) -> None:
            for kind, n in ops:
                if kind == "add":
                    self._insert(db, n)
                elif kind == "sequence":
                    self._keep_sequence(db, n)
                elif kind == "forget":
                    db.execute("DELETE FROM outbox WHERE handler_key = ? AND dead_at IS NULL", (n,))
                elif n.row_id is None:
                    continue
                elif kind == "delete":
                    db.execute("DELETE FROM outbox WHERE id = ?", (n.row_id,))
                elif kind == "attempt":
                    db.execute(
                        "UPDATE outbox SET attempts = ?, last_error = ? WHERE id = ?",
                        (n.attempts, n.last_error, n.row_id),
                    )
                elif kind == "dead":
                    self._dead(db, n.row_id, n.attempts, n.last_error, n.dead_at or time.time())
                elif kind == "revive":
                    db.execute(
                        "UPDATE outbox SET dead_at = NULL, attempts = 0 WHERE id = ?", (n.row_id,)
                    )

        self._run(run)
        self._delivery_write()

    def sequences(self) -> dict[str, int]:
        """The last sequence number of every deployment (numbering goes on after a restart)."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT deployment_id, last FROM outbox_sequence"
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"outbox {self.path}: {exc}") from exc
        return {str(d): int(n) for d, n in rows}

    def pending_keys(self) -> dict[str, int]:
        """Undelivered rows per handler key."""
        with self._lock:
            rows = self._db.execute(
                "SELECT handler_key, COUNT(*) FROM outbox WHERE dead_at IS NULL GROUP BY handler_key"
            ).fetchall()
        return {str(k): int(n) for k, n in rows}

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

        self._run(lambda db: self._dead(db, row_id, attempts, error, now))
        self._delivery_write()

    def _dead(
        self, db: sqlite3.Connection, row_id: int, attempts: int, error: str | None, now: float
    ) -> None:
        db.execute(
            "UPDATE outbox SET attempts = ?, last_error = ?, dead_at = ? WHERE id = ?",
            (attempts, error, now, row_id),
        )
        db.execute(
            "DELETE FROM outbox WHERE dead_at IS NOT NULL AND id NOT IN "
            "(SELECT id FROM outbox WHERE dead_at IS NOT NULL ORDER BY id DESC LIMIT ?)",
            (self.dead_limit,),
        )

    def revive(self, row_id: int) -> None:
        """Make a dead letter pending again, with its attempts reset."""
        self._run(
            lambda db: db.execute(
                "UPDATE outbox SET dead_at = NULL, attempts = 0 WHERE id = ?", (row_id,)
            )
        )

    def _select(self, where: str, args: tuple[Any, ...]) -> list[Notification]:
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
            Notification(
                handler_key=r[1],
                alert_type=r[3],
                metadata=Notification.metadata_from(json.loads(r[4]), r[2]),
                kwargs=json.loads(r[5]),
                created_at=r[8],
                attempts=r[9],
                last_error=r[10],
                dead_at=r[11],
                row_id=r[0],
            )
            for r in rows
        ]

    def pending(self, handler_key: str | None = None) -> list[Notification]:
        """Undelivered rows (of one handler, or all), oldest first."""
        if handler_key is None:
            return self._select("dead_at IS NULL ORDER BY id", ())
        return self._select("handler_key = ? AND dead_at IS NULL ORDER BY id", (handler_key,))

    def dead(self, limit: int = 100) -> list[Notification]:
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
