"""The scheduler: one asyncio loop over a heap of deadlines, in its own thread or the caller's.

Why a heap and not one task per deployment: at 10,000 deployments a sleeping task each costs
far more CPU and lets lateness run away (docs/performance.md). One timer handle is armed for
the earliest deadline; when it fires, every due deployment gets a check task of its own, so a
hanging endpoint only ever delays itself. Deadlines live on the monotonic clock and advance by
whole intervals from the first check, so phases never drift and never bunch up.

Phases sit on a grid of :data:`PHASE_GRID` seconds: deployments with the same interval whose
first checks fell into one grid step start together on every round, in one busy spell of the
loop, and their answers come back in few reads. At 1,000 checks/s one wake-up per check cost
more than the check (issue 14); on a 20 ms grid 10,000 deployments took 8.7-8.9 % of a core,
on a 100 ms grid 6.0-7.0 % (a wake-up costs the caches it finds cold, not just its own
instructions). A step's checks start :data:`MAX_STARTS_PER_WAKE` at a time with the answers
read in between, so starting them together adds ~0.3 ms to a measured response time, not the
whole step's start-up. A deadline stays exact: a deployment's checks are ``interval`` apart,
only the first one waits up to one step.

The engine knows nothing of rules or stores: each wake-up hands the due keys to ``start``
(supplied by the monitor, called on the loop), which reports each check's end with
:meth:`Engine.finish`. The engine keeps one check per key in flight and its own timing
statistics: ``checks_started == checks_done + checks_cancelled + in_flight`` within one
statistics window.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import logging
import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from crackseg.utils.deployment.eventloop import new_event_loop
from crackseg.utils.deployment.monitoring.overload import OverloadGuard

__all__ = [
    "BLOCKING_WORKERS",
    "COALESCE",
    "FIRST_CHECK_SPACING",
    "MAX_STARTS_PER_WAKE",
    "PHASE_GRID",
    "Engine",
    "StartFn",
]


logger = logging.getLogger("crackseg.utils.deployment.health_monitoring")

StartFn = Callable[[list[str]], None]

# Threads for blocking work (custom checkers and resource monitors): asyncio's default of
# cpu+4 would let a handful of hanging custom checks stall every other one.
BLOCKING_WORKERS = 64

#: At most this many checks start in one turn of the loop; the rest start on the next
#: turns, answers read between them. Why: a check's time runs from its request's write to
#: its answer's arrival, and an answer cannot be read while the loop is still starting
#: others: 100 checks started at once timed 7 ms for a 0.3 ms answer (32: +0.3 ms). After
#: a stall (a long GC pause, a blocking listener) every deadline it covered is due at once;
#: started together they wanted thousands of connections at the same moment.
MAX_STARTS_PER_WAKE = 32

#: First deadlines are rounded up to a multiple of this (seconds on the monotonic clock).
PHASE_GRID = 0.1

# Deadlines this close ahead of a wake-up start with it: timers fire with millisecond
# resolution (libuv), and intervals that are no multiple of the grid land between steps.
COALESCE = 0.004

# Spacing between first checks added at the same moment: 1,000 deployments added at once
# start over one second instead of in one burst, 10,000 over ten.
FIRST_CHECK_SPACING = 0.001

_PULL_CHUNK = 2_000  # deadlines moved back in per turn of the loop (Engine._relaxed)


class _Slot:
    __slots__ = ("busy", "due", "epoch", "generation", "interval", "last")

    def __init__(self, interval: float, generation: int) -> None:
        self.interval = interval
        self.generation = generation
        self.due = 0.0
        self.last = math.inf  # the deadline of its last round (none yet)
        self.busy = False
        self.epoch = 0  # the statistics window its running check started in


def _on_grid(t: float, grid: float) -> float:
    return math.ceil(t / grid) * grid if grid > 0 else t


class Engine:
    """Hands each scheduled key to ``start`` on its own interval, due keys in batches.

    Thread-safe: ``schedule``/``unschedule`` may be called from any thread, before or after
    ``start``. ``start_in_thread`` runs a private loop in a daemon thread;
    ``start_on_current_loop`` runs on an existing loop (for asyncio users). ``start`` and
    :meth:`finish` run on the loop; coroutines ``start`` runs go through :meth:`spawn`, so a
    stop cancels them. ``grid``: see :data:`PHASE_GRID` (0: phases as they come).
    """

    def __init__(
        self, start: StartFn, *, grid: float = PHASE_GRID, lateness_samples: int = 100_000
    ) -> None:
        self._start = start
        self.grid = grid
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = 0
        self._generation = 0
        self._next_first = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._owns_loop = False
        self._stopping = False
        self.checks_started = 0
        self.checks_done = 0
        self.checks_skipped_busy = 0
        self.checks_missed = 0
        self.checks_cancelled = 0
        self.batches = 0
        self.batch_max = 0
        self._in_flight = 0
        self._epoch = 0
        # The engine's own health: loop stalls, overload, the interval stretch that sheds load.
        self.guard = OverloadGuard(on_relax=self._relaxed)
        self.started_at: float | None = None
        self._lateness: deque[float] = deque(maxlen=lateness_samples)
        # Every started check's lateness, summed (seconds): a summary's _sum beside the
        # quantiles of the bounded window above; its _count is checks_started.
        self.lateness_sum = 0.0

    # ----------------------------------------------------------------- scheduling
    def schedule(self, key: str, interval: float) -> None:
        """Check ``key`` every ``interval`` seconds, the first time at once (spread)."""
        with self._lock:
            self._generation += 1
            slot = _Slot(interval, self._generation)
            self._slots[key] = slot
            if self._loop is not None:
                self._push_first(key, slot)
                loop = self._loop
            else:
                return
        self._wake(loop)

    def unschedule(self, key: str) -> None:
        with self._lock:
            self._slots.pop(key, None)  # its heap entries die of a stale generation

    def _push_first(self, key: str, slot: _Slot) -> None:
        now = time.monotonic()
        # A first check costs more than the next ones (a connection, a history to start):
        # 100,000 deployments added at once within one 10 s interval overran the monitor
        # for half a minute, so first checks start at most 1,000 a second.
        self._next_first = max(now, self._next_first + FIRST_CHECK_SPACING)
        slot.last = math.inf
        slot.due = _on_grid(self._next_first, self.grid)
        self._push(slot.due, key, slot.generation)

    def _push(self, due: float, key: str, generation: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key, generation))

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed while stopping
            loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        """Point the single timer at the earliest deadline."""
        loop = self._loop
        if loop is None or self._stopping:
            return
        with self._lock:
            due = self._heap[0][0] if self._heap else None
        if due is None:
            return
        if self._timer is not None:
            if self._timer_due is not None and self._timer_due <= due:
                return
            self._timer.cancel()
        delay = max(0.0, due - time.monotonic())
        self._timer_due = due
        self._timer = loop.call_at(loop.time() + delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_due = None
        if self._stopping or self._loop is None:
            return
        now = time.monotonic()
        starts: list[str] = []
        stretch = self.guard.stretch
        worst = 0.0
        horizon = now + COALESCE
        epoch = self._epoch
        with self._lock:
            heap = self._heap
            while heap and heap[0][0] <= horizon and len(starts) < MAX_STARTS_PER_WAKE:
                due, _, key, gen = heapq.heappop(heap)
                slot = self._slots.get(key)
                if slot is None or slot.generation != gen:
                    continue
                if slot.busy:
                    # The previous check still runs (a hanging endpoint): skip, never pile up.
                    self.checks_skipped_busy += 1
                else:
                    slot.busy = True
                    slot.epoch = epoch
                    late = now - due
                    if late > worst:
                        worst = late
                    late = late if late > 0.0 else 0.0
                    self._lateness.append(late)
                    self.lateness_sum += late
                    starts.append(key)
                slot.last = due
                # Shedding load stretches every interval alike (overload.py).
                interval = slot.interval * stretch
                nxt = due + interval
                if nxt <= horizon:
                    missed = int((horizon - due) // interval)
                    self.checks_missed += missed
                    nxt = due + (missed + 1) * interval
                slot.due = nxt
                self._push(nxt, key, gen)
        self.guard.note_late(worst)
        if starts:
            self.checks_started += len(starts)
            self._in_flight += len(starts)
            self.batches += 1
            if len(starts) > self.batch_max:
                self.batch_max = len(starts)
            try:
                self._start(starts)
            except Exception:
                logger.exception("starting %d checks failed inside the monitor", len(starts))
                self.finish(starts, recorded=False)
        self._arm()

    def _relaxed(self, stretch: float) -> None:
        """The guard relaxed its stretch (on the loop): deadlines set while shedding load
        move back to their last round plus the current interval (at 8x, a 30 s interval's
        next check waited 4 minutes after the loop had long kept up); those already past it
        are spread over one interval from now (by key), never started in one burst."""
        with self._lock:
            keys = list(self._slots)
        self._pull_in(keys, 0, stretch)

    def _pull_in(self, keys: list[str], start: int, stretch: float) -> None:
        # In chunks, the loop's other work between them: one pass over 100,000 deadlines
        # at once would itself be a stall.
        now = time.monotonic()
        with self._lock:
            for key in keys[start : start + _PULL_CHUNK]:
                slot = self._slots.get(key)
                if slot is None:
                    continue
                interval = slot.interval * stretch
                spread = now + interval * (zlib.crc32(key.encode()) / 2**32)
                due = max(slot.last + interval, spread)
                if due + COALESCE < slot.due:
                    self._generation += 1  # its old heap entry is now stale
                    slot.generation = self._generation
                    slot.due = due
                    self._push(due, key, slot.generation)
        loop = self._loop
        if start + _PULL_CHUNK < len(keys) and loop is not None and not self._stopping:
            loop.call_soon(self._pull_in, keys, start + _PULL_CHUNK, stretch)
        self._arm()

    def finish(self, keys: list[str], *, recorded: bool) -> None:
        """The checks of ``keys`` ended: recorded (done) or not (cancelled, set aside).

        On the loop. Each started key is finished exactly once; a key's next check may
        start after that.
        """
        epoch = self._epoch
        counted = 0
        with self._lock:
            for key in keys:
                slot = self._slots.get(key)
                if slot is not None:
                    slot.busy = False
                    if slot.epoch != epoch:
                        continue  # started before reset_stats(): not this window's
                counted += 1
            self._in_flight -= counted
        if recorded:
            self.checks_done += counted
        else:
            self.checks_cancelled += counted

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the loop as a task that a stop cancels."""
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        return self._loop is not None and not self._stopping

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop
            self._stopping = False
            self._heap.clear()
            self._next_first = 0.0
            self._in_flight = 0
            for key, slot in self._slots.items():
                slot.busy = False
                self._push_first(key, slot)
        self.started_at = time.monotonic()

    def start_in_thread(self) -> None:
        """Run on a private loop in a daemon thread; returns once the loop runs."""
        if self._loop is not None:
            return
        loop = new_event_loop()
        executor = concurrent.futures.ThreadPoolExecutor(
            BLOCKING_WORKERS, thread_name_prefix="crackseg-blocking"
        )
        loop.set_default_executor(executor)
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(self.guard.start, loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            # Idle workers exit now; one stuck in a hanging user call ends when the call does.
            executor.shutdown(wait=False, cancel_futures=True)
            # Cancel whatever a hurried stop left behind, then close.
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._begin(loop)
        self._owns_loop = True
        self._thread = threading.Thread(target=main, name="crackseg-monitor", daemon=True)
        self._thread.start()
        ready.wait(5.0)
        self._wake(loop)

    async def start_on_current_loop(self) -> None:
        """Run on the calling coroutine's loop."""
        if self._loop is not None:
            return
        self._begin(asyncio.get_running_loop())
        self._owns_loop = False
        self.guard.start(asyncio.get_running_loop())
        self._arm()

    async def _shutdown(self, cleanup: Callable[[], Awaitable[None]] | None) -> None:
        self._stopping = True
        self.guard.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=0.5)
        if cleanup is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cleanup(), 0.3)

    def stop(
        self, cleanup: Callable[[], Awaitable[None]] | None = None, timeout: float = 1.0
    ) -> None:
        """Stop from any thread other than the engine's own; returns within ~``timeout``."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if not self._owns_loop:
            raise RuntimeError(
                "monitoring runs on your asyncio loop: await stop_monitoring_async() instead"
            )
        if thread is threading.current_thread():
            raise RuntimeError(
                "stop_monitoring() cannot run on the monitor's own thread (from a result "
                "listener); call it from another thread"
            )
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(cleanup), loop)
        with contextlib.suppress(Exception):
            fut.result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)
        self._reset()

    async def stop_async(self, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        if self._loop is None:
            return
        if self._owns_loop:
            await asyncio.to_thread(self.stop, cleanup)
            return
        await self._shutdown(cleanup)
        self._reset()

    def _reset(self) -> None:
        with self._lock:
            self._loop = None
            self._thread = None
            self._owns_loop = False
            self._heap.clear()
            self._tasks = set()

    # ----------------------------------------------------------------- statistics
    def stats(self) -> dict[str, Any]:
        lat = sorted(self._lateness)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000.0, 3)

        return {
            "running": self.running,
            "deployments": len(self._slots),
            "checks_started": self.checks_started,
            # Due: every deadline that came up, whether started, skipped (busy) or missed.
            "checks_due": self.checks_started + self.checks_skipped_busy + self.checks_missed,
            "checks_done": self.checks_done,
            "checks_skipped_busy": self.checks_skipped_busy,
            "checks_missed": self.checks_missed,
            # Started but not recorded: stopped mid-check, removed meanwhile, or set aside
            # as the monitor's own failure (checks_discarded_overload).
            "checks_cancelled": self.checks_cancelled,
            "in_flight": self._in_flight,
            "batches": self.batches,
            "batch_max": self.batch_max,
            "lateness_p50_ms": pct(0.50),
            "lateness_p99_ms": pct(0.99),
            "lateness_max_ms": round(lat[-1] * 1000.0, 3) if lat else None,
            "lateness_sum_s": self.lateness_sum,
            **self.guard.stats(),
        }

    def reset_stats(self) -> None:
        """Start a new statistics window; checks running now count in neither."""
        self._lateness.clear()
        self._epoch += 1
        self.checks_started = self.checks_done = self.batches = self.batch_max = 0
        self.lateness_sum = 0.0
        self.checks_skipped_busy = self.checks_missed = self.checks_cancelled = 0
        with self._lock:
            self._in_flight = 0
            for slot in self._slots.values():
                # Running now: finishes in the old window, so it must not count in this one.
                slot.epoch = -1 if slot.busy else self._epoch
        self.guard.reset_stats()
