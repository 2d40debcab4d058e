"""The progress of one rollout as numbered events, for any number of followers.

Written by the rollout's threads, read by server-sent-event handlers on the event loop:

- :class:`EventLog` keeps the last ``capacity`` events (a bounded buffer, so a follower
  that reconnects with ``Last-Event-ID`` gets what it missed while the buffer still holds
  it) and hands each new one to every follower;
- :class:`Follower` is one client's bounded queue on the event loop: when it is full the
  client is too slow, it is marked :attr:`~Follower.dropped` and given nothing more (it
  may reconnect and resume from the buffer).

An event of kind ``done`` is the last one: the log is then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_QUEUE", "Event", "EventLog", "Follower"]

#: Events one rollout keeps for followers that reconnect.
DEFAULT_CAPACITY = 1024
#: Events one follower may have waiting before it is dropped as too slow.
DEFAULT_QUEUE = 256


@dataclass(frozen=True)
class Event:
    """One numbered event: ``seq`` (1, 2, ...) is its SSE id."""

    seq: int
    kind: str
    data: dict[str, Any]
    at: float = field(default_factory=time.time)


class Follower:
    """One client's queue of events on ``loop``; filled from any thread by :meth:`offer`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        #: Set once the queue overflowed: the client missed events and must reconnect.
        self.dropped = False

    def offer(self, event: Event) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens any more
            self._loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: Event) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True


class EventLog:
    """Numbered events of one rollout; thread-safe."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._lock = threading.Lock()
        self._buffer: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        self._followers: set[Follower] = set()
        self.closed = False

    @property
    def last_seq(self) -> int:
        return self._seq

    def publish(self, kind: str, data: dict[str, Any]) -> Event:
        """Record an event and hand it to every follower; ``done`` closes the log."""
        with self._lock:
            if self.closed:
                raise RuntimeError("the rollout's event log is closed")
            self._seq += 1
            event = Event(self._seq, kind, data)
            self._buffer.append(event)
            followers = list(self._followers)
            if kind == "done":
                self.closed = True
                self._followers.clear()
        for f in followers:
            f.offer(event)
        return event

    def events(self, after: int = 0) -> list[Event]:
        """The buffered events numbered above ``after``."""
        with self._lock:
            return [e for e in self._buffer if e.seq > after]

    def follow(
        self, loop: asyncio.AbstractEventLoop, after: int = 0, maxsize: int = DEFAULT_QUEUE
    ) -> tuple[Follower | None, list[Event]]:
        """The buffered events after ``after``, and a follower for the next ones (None when
        the log is closed: the backlog then ends with ``done``). No event is missed or given
        twice between the two."""
        with self._lock:
            backlog = [e for e in self._buffer if e.seq > after]
            if self.closed:
                return None, backlog
            follower = Follower(loop, maxsize)
            self._followers.add(follower)
            return follower, backlog

    def unfollow(self, follower: Follower) -> None:
        with self._lock:
            self._followers.discard(follower)
