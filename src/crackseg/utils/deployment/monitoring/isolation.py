"""Blocking user code (custom checkers, resource monitors) that can only stall its own keys.

A custom :class:`~.checks.base.HealthChecker` or :class:`~.resources.base.ResourceMonitor`
is synchronous code the monitor cannot interrupt. Run in one shared thread pool, each call
that hangs keeps a thread, the next check of the same deployment takes another one, and the
pool empties: measured with 20 of 100 deployments blocking forever, 53 % of the other 80
checks reported false timeouts. :class:`BlockingRunner` removes both causes:

- one call in flight per key: while a deployment's previous call still runs, the next one
  is not started but answered at once as :class:`Busy` (counted), so a hanging checker
  holds exactly one thread however long it hangs;
- a call past its deadline stops counting against the pool's capacity: a new thread takes
  its place, so ``max_workers`` calls that do return always have threads to run on.

Threads are daemons (a call that never returns cannot hold the process at exit) and idle
ones exit after ``idle_seconds``. Threads in use stay below ``max_workers`` plus the keys
whose call is overdue, i.e. at most one per deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker, checker_error, failure
from crackseg.utils.deployment.monitoring.resources.base import ResourceMonitor

__all__ = [
    "GRACE_SECONDS",
    "BlockingRunner",
    "Busy",
    "Overdue",
    "blocking_checker",
    "blocking_resource_monitor",
    "run_check",
]

logger = logging.getLogger("crackseg.utils.deployment.health_monitoring")

_T = TypeVar("_T")

#: How long past its ``timeout`` a blocking call is waited for before it is given up: a
#: checker that honours its timeout returns a little after it, not exactly at it.
GRACE_SECONDS = 0.5


class Busy(Exception):
    """The key's previous call is still running; this one was not started."""

    def __init__(self, key: str, running_for: float) -> None:
        super().__init__(f"{key}: previous call still running after {running_for:.1f}s")
        self.running_for = running_for


class Overdue(Exception):
    """The call did not return within its bound; it keeps its thread until it returns."""

    def __init__(self, bound: float) -> None:
        super().__init__(f"no return within {bound:g}s")
        self.bound = bound


class _Call:
    __slots__ = ("args", "fn", "fut", "key", "loop", "overdue", "started")

    def __init__(
        self,
        key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[Any],
    ) -> None:
        self.key, self.fn, self.args, self.loop, self.fut = key, fn, args, loop, fut
        self.started = time.monotonic()
        self.overdue = False


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class BlockingRunner:
    """Runs blocking calls in daemon threads, one in flight per key (see the module doc).

    >>> async def demo(runner):
    ...     return await runner.call("api", 1.0, sum, [1, 2])
    >>> asyncio.run(demo(BlockingRunner()))
    3
    """

    def __init__(self, max_workers: int = 64, idle_seconds: float = 30.0) -> None:
        self.max_workers = max_workers
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._running: dict[str, _Call] = {}
        self._threads = 0
        self._idle = 0
        self._queued = 0
        self._overdue = 0
        self.busy_runs = 0
        self.overdue_calls = 0

    async def call(self, key: str, timeout: float, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a worker thread, given up after ``timeout`` seconds.

        Raises :class:`Busy` at once while ``key``'s previous call runs, :class:`Overdue`
        when this one does not return in time, or what ``fn`` raised.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_T] = loop.create_future()
        with self._lock:
            running = self._running.get(key)
            if running is not None:
                self.busy_runs += 1
                raise Busy(key, time.monotonic() - running.started)
            item = _Call(key, fn, args, loop, fut)
            self._running[key] = item
            self._queued += 1
            self._spawn_if_needed()
        self._queue.put(item)
        done, _ = await asyncio.wait({fut}, timeout=timeout)
        if not done:
            with self._lock:
                if self._running.get(key) is item and not fut.done():
                    item.overdue = True
                    self._overdue += 1
                    self.overdue_calls += 1
                    # Its thread is written off until the call returns: replace it.
                    self._spawn_if_needed()
            if not fut.done():
                raise Overdue(timeout)
        return fut.result()

    def _spawn_if_needed(self) -> None:
        # Under the lock. Threads not stuck in an overdue call are the pool's capacity.
        if self._idle >= self._queued:
            return
        if self._threads - self._overdue >= self.max_workers:
            return
        self._threads += 1
        self._idle += 1
        threading.Thread(target=self._work, name="crackseg-blocking", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._queued == 0:
                        self._threads -= 1
                        self._idle -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
                if item is not None:
                    self._queued -= 1
            if item is None:
                with self._lock:
                    self._threads -= 1
                return
            try:
                ok, value = True, item.fn(*item.args)
            except BaseException as exc:
                ok, value = False, exc
            with self._lock:
                if self._running.get(item.key) is item:
                    del self._running[item.key]
                if item.overdue:
                    self._overdue -= 1
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                item.loop.call_soon_threadsafe(_settle, item.fut, ok, value)
            del item, value

    def stats(self) -> dict[str, int]:
        """Threads, calls running past their bound, busy runs and overdue calls so far."""
        with self._lock:
            return {
                "blocking_threads": self._threads,
                "blocking_overdue_now": self._overdue,
                "blocking_busy_runs": self.busy_runs,
                "blocking_overdue_calls": self.overdue_calls,
            }

    def close(self) -> None:
        """Let idle threads exit now (a thread inside a hanging call ends when it returns)."""
        with self._lock:
            n = self._threads
        for _ in range(n):
            self._queue.put(None)


def blocking_checker(checker: HealthChecker) -> bool:
    """True when ``checker``'s async twin is the default one, a thread around blocking code."""
    return type(checker).check_health_async is HealthChecker.check_health_async


def blocking_resource_monitor(monitor: ResourceMonitor) -> bool:
    """Every resource monitor's calls are synchronous; only the built-in one is known fast."""
    from crackseg.utils.deployment.monitoring.resources.psutil_monitor import (
        DefaultResourceMonitor,
    )

    return not isinstance(monitor, DefaultResourceMonitor)


async def run_check(
    runner: BlockingRunner, key: str, checker: HealthChecker, url: str, timeout: float
) -> HealthCheckResult:
    """One check by a blocking ``checker``: its result, or an unhealthy one saying why not.

    The checker is given ``timeout`` and waited for ``timeout`` + :data:`GRACE_SECONDS`; the
    messages state both, so what is reported is what was applied. A busy run has
    ``details["busy"] = True``.
    """
    name = type(checker).__name__
    started = time.monotonic()
    try:
        return await runner.call(
            key,
            timeout + GRACE_SECONDS,
            checker.check_health,
            url,
            timeout,
        )
    except Busy as exc:
        return failure(
            f"{name}.check_health still running after {exc.running_for:.1f}s (its timeout is "
            f"{timeout:g}s); this check was skipped",
            0.0,
            busy=True,
        )
    except Overdue as exc:
        return failure(
            f"timeout: {name}.check_health did not return within its {timeout:g}s timeout "
            f"(given up after {exc.bound:g}s)",
            (time.monotonic() - started) * 1000.0,
        )
    except Exception as exc:
        return checker_error(exc, started)
