"""Overload is the monitor's failure, not the targets': notice it, say it, shed load evenly.

A saturated monitor (too many checks for its core, a long GC pause, a listener that blocks
its loop) makes checks start late and time out although their targets answered: at 100,000
deployments that was 172,000 false failures (issue 14). :class:`OverloadGuard` watches the
engine's own loop with a heartbeat every ``beat`` seconds:

- a heartbeat more than ``stall`` late is a *stall*: a check that failed without an HTTP
  answer while stalls took a tenth of its time (or more than ``stall``) is the monitor's
  failure and is not recorded against its deployment (:meth:`monitor_failure`);
- a check that timed out waiting for a connection under the checker's total bound is the
  monitor's failure too (:meth:`saturated`): set aside, and the monitor is *overloaded*;
- a heartbeat (or a check's start) more than ``enter`` late marks the monitor *overloaded*
  (the ``monitor_overloaded`` alert, ``/healthz`` 503 with the reason), until ``calm``
  seconds pass without a stall;
- while it stalls, every interval is stretched by one factor (``stretch``, up to
  ``MAX_STRETCH``), so each deployment's checks are delayed alike instead of some skipped;
  the factor relaxes back to 1 as the loop keeps up, and ``on_relax`` hears of each
  third of it given back (a stretch of 1.5x or more), so deadlines already set far ahead
  move back in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["MAX_STRETCH", "OverloadGuard"]

#: Intervals grow at most this much while the monitor sheds load.
MAX_STRETCH = 8.0


class OverloadGuard:
    """Heartbeat on the engine's loop; see the module docstring. Read from any thread."""

    def __init__(
        self,
        *,
        beat: float = 0.1,
        stall: float = 0.25,
        enter: float = 1.0,
        calm: float = 30.0,
        on_change: Callable[[bool, str], None] | None = None,
        on_relax: Callable[[float], None] | None = None,
    ) -> None:
        self.beat = beat
        self.stall = stall
        self.enter = enter
        self.calm = calm
        self.on_change = on_change
        self.on_relax = on_relax
        self._high = 1.0  # the stretch at the last on_relax (or the highest since)
        self.stalls = 0  # heartbeats that ran more than ``stall`` late, ever
        self.stall_seconds = 0.0  # their lateness, summed: time the loop was not there
        self.discarded = 0  # check results not held against their deployment
        self.stretch = 1.0
        self.lag = 0.0  # the last heartbeat's lateness (seconds)
        self.lag_max = 0.0
        self.overloaded = False
        self.reason: str | None = None
        self.since: float | None = None  # wall clock, when it became overloaded
        self._last_stall = -1e18
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._expected = time.monotonic() + self.beat
        self._handle = loop.call_later(self.beat, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._loop = None
        if self.overloaded:
            self._set(False, "monitoring stopped")

    def note_late(self, lateness: float) -> None:
        """A check started ``lateness`` seconds after its deadline (from the engine's tick)."""
        if lateness > self.stall:
            self._stalled(time.monotonic(), lateness, "checks started")

    def monitor_failure(self, stalled_before: float, elapsed: float) -> bool:
        """Whether a failed check that ran ``elapsed`` s, starting when ``stall_seconds`` was
        ``stalled_before``, failed because of the monitor; counts it in ``discarded`` if so."""
        stolen = self.stall_seconds - stalled_before
        pending = time.monotonic() - self._expected  # a stall its heartbeat has not seen yet
        if pending > self.stall and self._loop is not None:
            stolen += pending
        if stolen <= 0.0 or stolen < min(self.stall, 0.1 * elapsed):
            return False
        self.discarded += 1
        return True

    def saturated(self, why: str) -> None:
        """A check could not even get a connection (the checker's total bound): the
        monitor's failure, set aside and reported like a stall."""
        self.discarded += 1
        self._last_stall = time.monotonic()
        if not self.overloaded:
            self._set(True, f"the monitor is overloaded: a check timed out {why}")

    def _tick(self) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._expected)
        self.lag = lag
        self.lag_max = max(self.lag_max, lag)
        if lag > self.stall:
            self.stall_seconds += lag
            self._stalled(now, lag, "its loop ran")
        else:
            if self.stretch > 1.0 and lag < self.stall / 2:
                self.stretch = max(1.0, self.stretch * 0.98)
                if self.stretch * 1.5 <= self._high:
                    self._high = self.stretch
                    if self.on_relax is not None:
                        self.on_relax(self.stretch)
                elif self.stretch == 1.0:
                    # A stretch under 1.5x delays a round by less than half an interval: not
                    # worth a pass over every deadline (at 100,000 deployments, passes after
                    # every small stall cost half again the CPU per check).
                    self._high = 1.0
            if self.overloaded and now - self._last_stall > self.calm:
                self._set(False, f"no stall for {self.calm:g}s")
        loop = self._loop
        if loop is not None:
            self._expected = now + self.beat
            self._handle = loop.call_later(self.beat, self._tick)

    def _stalled(self, now: float, lag: float, what: str) -> None:
        self.stalls += 1
        self._last_stall = now
        self.stretch = min(MAX_STRETCH, self.stretch * 1.25)
        self._high = max(self._high, self.stretch)
        if lag > self.enter and not self.overloaded:
            self._set(
                True,
                f"the monitor is overloaded: {what} {lag * 1000:.0f} ms late; "
                f"checks are spread {self.stretch:.2f}x further apart until it keeps up",
            )

    def _set(self, overloaded: bool, reason: str) -> None:
        self.overloaded = overloaded
        self.reason = reason if overloaded else None
        self.since = time.time() if overloaded else None
        if self.on_change is not None:
            self.on_change(overloaded, reason)

    def stats(self) -> dict[str, float | bool | str | None]:
        return {
            "overloaded": self.overloaded,
            "overload_reason": self.reason,
            "loop_lag_ms": round(self.lag * 1000.0, 3),
            "loop_lag_max_ms": round(self.lag_max * 1000.0, 3),
            "interval_stretch": round(self.stretch, 3),
            "loop_stalls": self.stalls,
            "checks_discarded_overload": self.discarded,
        }

    def reset_stats(self) -> None:
        self.lag_max = 0.0
        self.discarded = 0
