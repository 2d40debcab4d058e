"""Alert state in SQLite (table ``alert_state``, beside the history in the same file).

Writes are queued and committed by a thread of their own: a slow or locked file delays the
record, never a check. A write that fails is kept and tried again, in order. Each write may
carry an ``after`` callback run once it is committed, in order: the monitor sends a
notification only after the state saying it was sent is on disk, so a ``kill -9`` between
the two can never page twice.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from crackseg.utils.deployment.errors import StoreError
from crackseg.utils.deployment.history.alert_state import AlertRecord
from crackseg.utils.deployment.history.sqlite.schema import connect
from crackseg.utils.deployment.history.write_behind import WriteBehind

__all__ = ["GIVE_UP_WAITING", "SQLiteAlertState"]

logger = logging.getLogger("crackseg.utils.deployment.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (
    deployment_id TEXT NOT NULL, alert_type TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (deployment_id, alert_type));
"""
# Bounded: transitions arrive at human rates; this many pending means the file is gone.
_MAX_PENDING = 100_000
#: After failing this long, callbacks (notifications) run without their state on disk:
#: a broken file must not silence alerts.
GIVE_UP_WAITING = 5.0


@dataclass
class _Batch:
    """Rows to commit, in order (None deletes), and the callbacks waiting for them."""

    rows: list[tuple[tuple[str, str], AlertRecord | None]]
    callbacks: list[Callable[[], None]]
    #: Failing for longer than GIVE_UP_WAITING: its callbacks already ran.
    late: bool = False


class SQLiteAlertState(WriteBehind[_Batch]):
    """An :class:`~..alert_state.AlertStateStore` in ``path`` (WAL, ``synchronous=NORMAL``).

    >>> import tempfile, os
    >>> from crackseg.utils.deployment.models import AlertEvent
    >>> path = os.path.join(tempfile.mkdtemp(), "h.db")
    >>> st = SQLiteAlertState(path)
    >>> st.save(AlertRecord(AlertEvent("api", "health_check_failed", "critical", "firing",
    ...                                "down", None, None, started_at=1.0), ("webhook-0",)))
    >>> st.close()
    >>> [r.notified for r in SQLiteAlertState(path).load()]
    [('webhook-0',)]
    """

    def __init__(self, path: str | Path, *, retry_interval: float = 1.0) -> None:
        super().__init__("alert-state-writer", retry_interval=retry_interval)
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Short: the writer retries on its own, and a notification waits for it.
            self._db = connect(self.path, busy_timeout=1.0)
            self._db.executescript(_SCHEMA)
            rows = self._db.execute("SELECT data FROM alert_state").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open alert state in {self.path}: {exc}") from exc
        self._loaded: list[AlertRecord] = []
        for (data,) in rows:
            try:
                self._loaded.append(AlertRecord.from_dict(orjson.loads(data)))
            except (ValueError, TypeError, KeyError) as exc:
                logger.warning("alert state %s: skipping an unreadable row: %s", self.path, exc)
        # (deployment_id, alert_type) -> record to save, or None to delete; in arrival order.
        self._pending_rows: dict[tuple[str, str], AlertRecord | None] = {}
        self._order: deque[tuple[str, str]] = deque()
        self._after: list[Callable[[], None]] = []
        self._failing_since: float | None = None
        self.write_errors = 0
        self._start()

    def load(self) -> list[AlertRecord]:
        """The records found when the file was opened (the monitor keeps them in memory)."""
        return list(self._loaded)

    def _put(
        self,
        key: tuple[str, str],
        record: AlertRecord | None,
        after: Callable[[], None] | None,
    ) -> None:
        with self._cond:
            if self._closing:
                raise StoreError(f"alert state {self.path} is closed")
            if key not in self._pending_rows:
                if len(self._pending_rows) >= _MAX_PENDING:
                    logger.error("alert state %s: %d writes pending, dropping one", self.path,
                                 len(self._pending_rows))  # fmt: skip
                    if after is not None:
                        self._after.append(after)
                    return
                self._order.append(key)
            self._pending_rows[key] = record  # the newest state of a key is all that matters
            if after is not None:
                self._after.append(after)
            self._cond.notify_all()

    def save(self, record: AlertRecord, after: Callable[[], None] | None = None) -> None:
        self._put(record.key, record, after)

    def delete(
        self, deployment_id: str, alert_type: str, after: Callable[[], None] | None = None
    ) -> None:
        self._put((deployment_id, alert_type), None, after)

    @staticmethod
    def _call(callbacks: list[Callable[[], None]]) -> None:
        for fn in callbacks:
            try:
                fn()
            except Exception:
                logger.exception("alert state: a callback after commit failed")

    def _pending(self) -> bool:
        return bool(self._pending_rows or self._after)

    def _take(self) -> _Batch:
        batch = _Batch([(k, self._pending_rows.pop(k)) for k in self._order], self._after)
        self._order.clear()
        self._after = []
        return batch

    def _write(self, batch: _Batch) -> None:
        try:
            if batch.rows:
                self._commit(batch.rows)
        except sqlite3.Error:
            now = time.monotonic()
            self._failing_since = self._failing_since or now
            if now - self._failing_since >= GIVE_UP_WAITING:
                batch.late = True
                self._call(batch.callbacks)  # deliver without the state rather than not at all
                batch.callbacks = []
            raise
        self._failing_since = None
        self._call(batch.callbacks)

    def _failed(self, batch: _Batch, exc: Exception) -> bool:
        if not isinstance(exc, sqlite3.Error):
            raise exc
        self.write_errors += 1
        logger.error("alert state %s: write failed, will retry: %s", self.path, exc)
        # Put them back in front; anything newer for a key wins.
        for k, rec in reversed(batch.rows):
            if k not in self._pending_rows:
                self._pending_rows[k] = rec
                self._order.appendleft(k)
        self._after[:0] = batch.callbacks
        return self._closing and batch.late

    def _commit(self, batch: list[tuple[tuple[str, str], AlertRecord | None]]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for (dep, kind), rec in batch:
                if rec is None:
                    db.execute(
                        "DELETE FROM alert_state WHERE deployment_id = ? AND alert_type = ?",
                        (dep, kind),
                    )
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO alert_state (deployment_id, alert_type, data)"
                        " VALUES (?,?,?)",
                        (dep, kind, orjson.dumps(rec.to_dict())),
                    )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued write is committed; False on timeout."""
        with self._cond:
            try:
                return self._wait(
                    lambda: not self._pending_rows and not self._after and not self._busy, timeout
                )
            except StoreError:  # the thread stopped by accident; the log says why
                return False

    def close(self) -> None:
        """Commit what is queued (bounded wait), stop the writer. Safe to call twice."""
        with self._cond:
            if self._closing:
                return
        self.flush()
        self._stop(5.0)
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
