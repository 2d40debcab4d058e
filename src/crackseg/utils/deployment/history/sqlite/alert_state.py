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
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import orjson

from crackseg.utils.deployment.errors import StoreError
from crackseg.utils.deployment.history.alert_state import AlertRecord
from crackseg.utils.deployment.history.sqlite.schema import connect

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


class SQLiteAlertState:
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
        self.path = str(path)
        self.retry_interval = retry_interval
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
        self._cond = threading.Condition()
        # (deployment_id, alert_type) -> record to save, or None to delete; in arrival order.
        self._pending: dict[tuple[str, str], AlertRecord | None] = {}
        self._order: deque[tuple[str, str]] = deque()
        self._after: list[Callable[[], None]] = []
        self._failing_since: float | None = None
        self._writing = 0
        self._closing = False
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="alert-state-writer", daemon=True)
        self._thread.start()

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
            if key not in self._pending:
                if len(self._pending) >= _MAX_PENDING:
                    logger.error("alert state %s: %d writes pending, dropping one", self.path,
                                 len(self._pending))  # fmt: skip
                    if after is not None:
                        self._after.append(after)
                    return
                self._order.append(key)
            self._pending[key] = record  # the newest state of a key is all that matters
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

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._after and not self._closing:
                    self._cond.wait()
                if not self._pending and not self._after:
                    return
                batch = [(k, self._pending.pop(k)) for k in self._order]
                self._order.clear()
                callbacks, self._after = self._after, []
                self._writing = len(batch) + len(callbacks)
            try:
                if batch:
                    self._write(batch)
            except sqlite3.Error as exc:
                self.write_errors += 1
                now = time.monotonic()
                self._failing_since = self._failing_since or now
                late = now - self._failing_since >= GIVE_UP_WAITING
                logger.error("alert state %s: write failed, will retry: %s", self.path, exc)
                if late:
                    self._call(callbacks)  # deliver without the state rather than not at all
                    callbacks = []
                with self._cond:
                    # Put them back in front; anything newer for a key wins.
                    for k, rec in reversed(batch):
                        if k not in self._pending:
                            self._pending[k] = rec
                            self._order.appendleft(k)
                    self._after[:0] = callbacks
                    self._writing = 0
                    self._cond.notify_all()
                    if self._closing and late:
                        return
                    self._cond.wait(self.retry_interval)
                continue
            self._failing_since = None
            self._call(callbacks)
            with self._cond:
                self._writing = 0
                self._cond.notify_all()

    def _write(self, batch: list[tuple[tuple[str, str], AlertRecord | None]]) -> None:
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
            return self._cond.wait_for(
                lambda: not self._pending and not self._after and not self._writing, timeout
            )

    def close(self) -> None:
        """Commit what is queued (bounded wait), stop the writer. Safe to call twice."""
        with self._cond:
            if self._closing:
                return
        self.flush()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(5.0)
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
