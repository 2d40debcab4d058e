"""Outbox writes off the caller's thread: the monitor's check loop never waits for SQLite.

:class:`OutboxWriter` takes writes in order and commits them in batches from one thread.
A notification delivered before its row was written is never written at all (its add and
delete cancel out), so a receiver that is up costs no disk work beyond the batch; a file
locked by someone else delays the rows, never a check or a delivery. A failed batch is kept
and tried again, in order.
"""

from __future__ import annotations

import logging
from collections import deque

from crackseg.utils.deployment.delivery.outbox import Outbox, OutboxOp
from crackseg.utils.deployment.delivery.record import Notification
from crackseg.utils.deployment.errors import StoreError
from crackseg.utils.deployment.history.write_behind import WriteBehind

__all__ = ["OutboxWriter"]

logger = logging.getLogger("crackseg.utils.deployment.alerts")

# Where a notification's row stands, kept on the record itself (by id: records are mutable).
_QUEUED, _TAKEN, _CANCELLED = "queued", "taken", "cancelled"


class OutboxWriter(WriteBehind[list[OutboxOp]]):
    """One thread committing :data:`~.outbox.OutboxOp` writes to ``outbox`` in order."""

    def __init__(self, outbox: Outbox, *, retry_interval: float = 1.0) -> None:
        super().__init__("alert-outbox-writer", retry_interval=retry_interval)
        self.outbox = outbox
        self._ops: deque[OutboxOp] = deque()
        self._rows: dict[int, str] = {}  # id(notification) -> _QUEUED / _TAKEN / _CANCELLED
        self.errors = 0
        self.last_error: str | None = None
        self._start()

    def add(self, items: list[Notification]) -> None:
        with self._cond:
            for n in items:
                self._rows[id(n)] = _QUEUED
                self._ops.append(("add", n))
            self._cond.notify_all()

    def update(self, kind: str, n: Notification) -> None:
        """``delete``, ``attempt``, ``dead`` or ``revive`` the row of ``n``."""
        with self._cond:
            state = self._rows.get(id(n))
            if state == _CANCELLED:
                return
            if state == _QUEUED:
                # The add is still waiting: it writes the record as it is then, so an update
                # has nothing to add, and a delete means the row never needs to exist.
                if kind == "delete":
                    self._rows[id(n)] = _CANCELLED
                return
            self._ops.append((kind, n))
            self._cond.notify_all()

    def forget(self, handler_key: str) -> None:
        with self._cond:
            self._ops.append(("forget", handler_key))
            self._cond.notify_all()

    def _pending(self) -> bool:
        return bool(self._ops)

    def _take(self) -> list[OutboxOp]:
        batch: list[OutboxOp] = []
        while self._ops:
            kind, n = op = self._ops.popleft()
            if kind == "add":
                if self._rows.pop(id(n), None) == _CANCELLED:
                    # Delivered before it was written: only its number must survive, or
                    # numbering would go backwards after a restart.
                    batch.append(("sequence", n))
                    continue
                self._rows[id(n)] = _TAKEN
            batch.append(op)
        return batch

    def _write(self, batch: list[OutboxOp]) -> None:
        self.outbox.apply(batch)

    def _written(self, batch: list[OutboxOp]) -> None:
        for kind, n in batch:
            if kind == "add":
                self._rows.pop(id(n), None)  # stored: later updates go by row id

    def _failed(self, batch: list[OutboxOp], exc: Exception) -> bool:
        if not isinstance(exc, StoreError):
            raise exc
        self.errors += 1
        self.last_error = str(exc)
        logger.error("alert outbox: write failed, will retry: %s", exc)
        self._ops.extendleft(reversed(batch))
        for kind, n in batch:
            if kind == "add":
                self._rows[id(n)] = _QUEUED
        return self._closing

    def pending(self) -> int:
        with self._cond:
            return len(self._ops) + (1 if self._busy else 0)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every write so far is committed; False on timeout (or if the thread
        stopped by accident: the log says why)."""
        with self._cond:
            try:
                return self._wait(lambda: not self._ops and not self._busy, timeout)
            except StoreError:
                return False

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued (bounded wait) and stop. Safe to call twice."""
        self.flush(timeout)
        self._stop(timeout)
