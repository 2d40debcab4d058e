"""Write-behind: callers queue writes and return; one thread commits them in batches.

The history store, the alert state and the notification outbox all keep SQLite off the
threads that must never wait for a disk (the check loop, a delivery). They differ in what
they queue (droppable rows beside precious ones; the newest state per key with callbacks
to run once it is on disk; ordered operations whose add and delete cancel out), so each
keeps its own queue; :class:`WriteBehind` is the part they share: the thread, the one
condition guarding the queue, when to write, a failed batch put back and tried again after
a pause, bounded waits that notice a dead thread, and a close that commits what is queued.

A subclass fills in five hooks. Those named ``_due``, ``_pending``, ``_take``, ``_written``
and ``_failed`` run holding :attr:`_cond`; ``_write`` runs without it, on the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, TypeVar

from crackseg.utils.deployment.errors import StoreError

__all__ = ["WriteBehind"]

logger = logging.getLogger("crackseg.utils.deployment.store")

_B = TypeVar("_B")


class WriteBehind(ABC, Generic[_B]):
    """One daemon thread writing batches of type ``_B`` taken from a subclass's queue.

    Call :meth:`_start` at the end of the subclass's ``__init__``; use :meth:`_wait` (holding
    :attr:`_cond`) for flushes and :meth:`_stop` to close. A batch whose ``_write`` raises
    goes to ``_failed``, which puts back what must be retried; the thread then pauses
    ``retry_interval`` seconds (woken early by a close). An exception that ``_failed``
    re-raises, or any ``BaseException``, stops the thread: :meth:`_wait` then raises
    :class:`StoreError` instead of waiting for ever.
    """

    def __init__(self, name: str, *, retry_interval: float = 1.0) -> None:
        self.retry_interval = retry_interval
        self._cond = threading.Condition()
        self._closing = False
        #: A batch is taken and not yet written or put back.
        self._busy = False
        #: What stopped the thread, if it stopped by accident.
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- hooks ------------------------------------------------------------------------------

    @abstractmethod
    def _pending(self) -> bool:
        """Anything queued (a close writes it before the thread stops)."""

    def _due(self, now: float) -> float | None:
        """Seconds until the next batch is due (``<= 0``: now), or None to sleep until
        woken. By default a batch is due as soon as anything is queued."""
        return 0.0 if self._pending() else None

    @abstractmethod
    def _take(self) -> _B:
        """Remove the next batch from the queue."""

    @abstractmethod
    def _write(self, batch: _B) -> None:
        """Commit ``batch`` (on the thread, without the lock); raise if it failed."""

    def _written(self, batch: _B) -> None:
        """``batch`` is committed."""

    def _failed(self, batch: _B, exc: Exception) -> bool:
        """``_write(batch)`` raised ``exc``: put back what must be retried. True stops the
        thread now (a close that gives up); re-raising ``exc`` stops it as a crash."""
        raise exc

    def _begin(self) -> None:
        """Run on the thread before the first batch (open its connection)."""

    def _end(self) -> None:
        """Run on the thread when it stops, however it stops."""

    # -- machinery --------------------------------------------------------------------------

    def _start(self) -> None:
        self._thread.start()

    def _next(self) -> tuple[_B] | None:
        """Wait for a due batch and take it (in a 1-tuple); None when the thread should stop."""
        with self._cond:
            while not self._closing:
                wait = self._due(time.monotonic())
                if wait is not None and wait <= 0:
                    break
                self._cond.wait(wait)
            else:
                if not self._pending():
                    return None
            self._busy = True
            return (self._take(),)

    def _run(self) -> None:
        try:
            self._begin()
            while (taken := self._next()) is not None:
                (batch,) = taken
                try:
                    self._write(batch)
                except Exception as exc:
                    with self._cond:
                        # _failed first: if it re-raises, the batch is still in flight (busy)
                        # and no waiter may see an idle writer before the crash is recorded.
                        stop = self._failed(batch, exc)
                        self._busy = False
                        self._cond.notify_all()
                        if stop:
                            return
                        self._cond.wait(self.retry_interval)
                    continue
                with self._cond:
                    self._busy = False
                    self._written(batch)
                    self._cond.notify_all()
        except BaseException as exc:  # the writer must not die silently: _wait reports it
            logger.exception("%s stopped", self._thread.name)
            with self._cond:
                self._error = exc
                # The batch it held was never written: a flush waiting for it must hear of
                # the crash (from _wait), not see an idle writer.
                self._busy = True
                self._cond.notify_all()
        finally:
            self._end()

    def _dead(self) -> StoreError | None:
        """The error to raise when the thread stopped by accident (call holding the lock)."""
        if self._error is not None and not self._thread.is_alive():
            return StoreError(f"{self._thread.name} stopped: {self._error}")
        return None

    def _wait(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait, holding :attr:`_cond`, until ``done()``; False after ``timeout`` seconds.

        Raises :class:`StoreError` if the thread stopped by accident meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            dead = self._dead()
            if dead is not None:
                raise dead
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                return False
            self._cond.wait(left)
        return True

    def _stop(self, timeout: float | None = None) -> None:
        """Ask the thread to write what is queued and stop; join it (up to ``timeout``)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
