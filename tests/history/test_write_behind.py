"""The write-behind thread the SQLite writers share: order, retry after a failure, a close
that writes what is queued, a crash reported instead of waited on for ever."""

from __future__ import annotations

import threading

import pytest

from crackseg.utils.deployment.errors import StoreError
from crackseg.utils.deployment.history.write_behind import WriteBehind


class Journal(WriteBehind[list[int]]):
    """Appends numbers to ``written``; the next ``failures`` writes raise OSError (retried),
    a write of a negative number raises RuntimeError (a crash)."""

    def __init__(self) -> None:
        super().__init__("journal-writer", retry_interval=0.05)
        self.queue: list[int] = []
        self.written: list[int] = []
        self.failures = 0
        self.tries = 0
        self.gate = threading.Event()
        self.gate.set()
        self._start()

    def put(self, n: int) -> None:
        with self._cond:
            self.queue.append(n)
            self._cond.notify_all()

    def _pending(self) -> bool:
        return bool(self.queue)

    def _take(self) -> list[int]:
        batch, self.queue = self.queue, []
        return batch

    def _write(self, batch: list[int]) -> None:
        self.gate.wait(10)
        self.tries += 1
        if any(n < 0 for n in batch):
            raise RuntimeError("negative")
        if self.failures:
            self.failures -= 1
            raise OSError("disk said no")
        self.written += batch

    def _failed(self, batch: list[int], exc: Exception) -> bool:
        if not isinstance(exc, OSError):
            raise exc
        self.queue[:0] = batch  # in front: order holds
        return False

    def flush(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._wait(lambda: not self.queue and not self._busy, timeout)


def test_batches_keep_their_order_and_a_close_writes_what_is_queued() -> None:
    j = Journal()
    j.gate.clear()  # the first batch sits in _write while more arrive
    j.put(1)
    for n in range(2, 6):
        j.put(n)
    j.gate.set()
    assert j.flush()
    assert j.written == [1, 2, 3, 4, 5]
    j.gate.clear()
    j.put(6)
    j.put(7)
    j.gate.set()
    j._stop(10)
    assert j.written == [1, 2, 3, 4, 5, 6, 7] and not j._thread.is_alive()


def test_a_failed_batch_is_tried_again_in_front_of_newer_ones() -> None:
    j = Journal()
    j.failures = 2
    j.put(1)
    j.put(2)
    assert j.flush()
    j.put(3)
    assert j.flush()
    assert j.written == [1, 2, 3] and j.tries >= 4
    j._stop(10)


def test_a_crashed_writer_is_reported_not_waited_on() -> None:
    j = Journal()
    j.put(-1)
    with pytest.raises(StoreError, match="journal-writer stopped: negative"):
        j.flush(timeout=30)
    assert not j._thread.is_alive()
