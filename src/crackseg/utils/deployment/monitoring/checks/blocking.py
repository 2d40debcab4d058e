"""The checker's synchronous facade: a private event-loop thread, and one blocking call's
hand-off from it.

The blocking ``check_health`` starts on the task-free path (:class:`SyncProbe`) and waits
on a held lock (:class:`Handoff`): no task, no coroutine when a connection is idle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from crackseg.utils.deployment.eventloop import new_event_loop
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks._fastclient import outcome_of
from crackseg.utils.deployment.monitoring.checks._fastconn import ClientClosedError, FastResponse
from crackseg.utils.deployment.monitoring.checks.loops import CLOSE_WAIT_S
from crackseg.utils.deployment.monitoring.checks.probe import Probe
from crackseg.utils.deployment.monitoring.checks.request import RequestPolicy

__all__ = ["Handoff", "PrivateLoop", "SyncProbe"]

_T = TypeVar("_T")


class Handoff:
    """One blocking caller's answer from the loop: a held lock, released with the value."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: HealthCheckResult | BaseException | None = None

    def set(self, value: HealthCheckResult | BaseException) -> None:
        self.value = value
        self._lock.release()

    def settle(self, task: asyncio.Task[HealthCheckResult]) -> None:
        self.set(outcome_of(task))

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=timeout)

    def result(self) -> HealthCheckResult:
        """The value once :meth:`wait` returned True; a closed checker raises."""
        value = self.value
        if isinstance(value, HealthCheckResult):
            return value
        raise RuntimeError("health checker closed during the call") from value


class SyncProbe(Probe):
    """A :class:`Probe` for one blocking call: a closed client is an error, not a result."""

    __slots__ = ("handoff",)

    def __init__(self, policy: RequestPolicy, handoff: Handoff) -> None:
        super().__init__(policy, handoff.set)
        self.handoff = handoff

    def answered(self, outcome: FastResponse | BaseException) -> None:
        if isinstance(outcome, ClientClosedError):
            self.busy = False
            self.handoff.set(outcome)
        else:
            super().answered(outcome)


class PrivateLoop:
    """An event loop in a daemon thread of its own, started on first use, stopped by
    :meth:`stop` and started again on the next use. Thread-safe."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_it(self) -> bool:
        """Whether the caller runs on the loop's own thread (where it must not block)."""
        return self._thread is not None and threading.current_thread() is self._thread

    @property
    def started(self) -> bool:
        return self._thread is not None

    def get(self) -> asyncio.AbstractEventLoop:
        """The running loop, started now if need be; RuntimeError on its own thread."""
        with self._lock:
            if self.on_it():
                raise RuntimeError("synchronous checks cannot run on the checker's own loop thread")
            if self._loop is None:
                loop = new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=_run_loop, args=(loop, ready), name=self._name, daemon=True
                )
                thread.start()
                ready.wait(10.0)
                self._thread, self._loop = thread, loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, _T], budget: float) -> _T:
        """Run ``coro`` on the loop and wait for it; it bounds itself to ``budget`` s."""
        try:
            loop = self.get()
        except BaseException:
            coro.close()
            raise
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            # The coroutine bounds itself; the margin only guards against a wedged loop.
            return fut.result(budget + CLOSE_WAIT_S)
        except concurrent.futures.CancelledError:
            raise RuntimeError("health checker closed during the call") from None
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise RuntimeError("health checker loop did not answer in time") from None

    def stop(self) -> None:
        """Stop the loop and join its thread (bounded); harmless when not started."""
        with self._lock:
            thread, loop = self._thread, self._loop
            self._thread = self._loop = None
        if thread is not None and loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=CLOSE_WAIT_S * 2)


def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
