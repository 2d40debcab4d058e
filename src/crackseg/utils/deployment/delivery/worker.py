"""The per-handler half of delivery: one queue, one thread, retries by age, coalescing.

Private: :class:`~.dispatcher.AlertDispatcher` owns the workers.
"""

from __future__ import annotations

import bisect
import logging
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.options import scrub
from crackseg.utils.deployment.delivery.record import Notification
from crackseg.utils.deployment.delivery.retry import RetryPolicy
from crackseg.utils.deployment.errors import NotifierError

__all__ = ["OVERFLOW_FACTOR", "HandlerStats", "Sink", "Worker"]

logger = logging.getLogger("crackseg.utils.deployment.alerts")

#: A full queue holds resolves and first firings beyond its size, up to this many times it.
OVERFLOW_FACTOR = 4


class Sink(Protocol):
    """What a worker needs of whoever owns it (the dispatcher): its limits, and where a
    notification's fate goes once the worker is done with it."""

    @property
    def queue_size(self) -> int:
        """Notifications a worker holds before a full queue coalesces or drops."""

    @property
    def retry(self) -> RetryPolicy:
        """The policy of handlers that have none of their own."""

    def outbox_update(self, kind: str, item: Notification) -> None:
        """``item`` was delivered (``delete``), failed and will be retried (``attempt``)."""

    def dead_letter(self, item: Notification) -> None:
        """``item`` was given up on."""


@dataclass
class HandlerStats:
    """Delivery counters of one handler. ``failed`` counts failed tries, ``retried`` the
    tries scheduled again, ``dead_lettered`` the notifications given up, ``coalesced`` those
    a full queue cancelled out (a firing with its own resolve, or a repeat), ``dropped``
    those it had to throw away (only when far beyond its size)."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    coalesced: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    queued: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "coalesced": self.coalesced,
            "dropped": self.dropped,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "queued": self.queued,
        }


class Worker:
    """One handler's queue and thread.

    Notifications of one deployment leave in sequence order, retries and retried dead
    letters included; while the head of a deployment waits for its retry, other
    deployments' notifications go ahead.
    """

    def __init__(self, handler: AlertHandler, key: str, owner: Sink) -> None:
        self.handler = handler
        self.key = key
        self.owner = owner
        self.stats = HandlerStats()
        self.cond = threading.Condition()
        self.pending: OrderedDict[int, Notification] = OrderedDict()
        self.by_dep: dict[str, list[Notification]] = {}
        self.ready_at: dict[str, float] = {}
        # Highest sequence delivered per (deployment, alert type): a retried dead letter
        # older than it would undo a newer state (a firing after its own resolve).
        self.delivered: dict[tuple[str, str], int] = {}
        self.in_flight: Notification | None = None
        self.stopping = False
        self.rng = random.Random()
        self.thread = threading.Thread(target=self._run, name=f"alert-{key}", daemon=True)

    @property
    def retry(self) -> RetryPolicy:
        return getattr(self.handler, "retry", None) or self.owner.retry

    # -- queueing -------------------------------------------------------------------------
    def put(self, item: Notification) -> list[Notification]:
        """Queue ``item``; returns what a full queue cancelled out or dropped to make room."""
        with self.cond:
            out: list[Notification] = []
            if len(self.pending) >= self.owner.queue_size:
                out = self._make_room(item)
            if item not in out:
                self._insert(item)
            self.cond.notify_all()
        return out

    def _insert(self, item: Notification) -> None:
        self.pending[item.order] = item
        bisect.insort(
            self.by_dep.setdefault(item.deployment_id, []), item, key=Notification.sort_key
        )

    def _make_room(self, new: Notification) -> list[Notification]:
        waiting = [i for i in self.pending.values() if i is not self.in_flight]
        firing: dict[tuple[str, str, Any], Notification] = {}
        for i in waiting:  # oldest first: a firing and its own resolve cancel out
            if i.state == "firing" and not i.kwargs.get("repeat"):
                firing.setdefault(i.incident, i)
            elif i.state == "resolved" and i.incident in firing:
                pair = [firing[i.incident], i]
                self._forget_all(pair)
                self.stats.coalesced += 2
                return pair
        if new.state == "resolved" and new.incident in firing:
            pair = [firing[new.incident], new]
            self._forget_all(pair[:1])
            self.stats.coalesced += 2
            return pair
        repeat = next((i for i in waiting if i.kwargs.get("repeat")), None)
        if repeat is not None:  # a repeat says nothing the receiver has not been told
            self._forget_all([repeat])
            self.stats.coalesced += 1
            return [repeat]
        if new.kwargs.get("repeat"):
            self.stats.coalesced += 1
            return [new]
        if len(self.pending) < self.owner.queue_size * OVERFLOW_FACTOR or not waiting:
            return []  # resolves and first firings are kept beyond the size
        self._forget_all(waiting[:1])
        self.stats.dropped += 1
        return waiting[:1]

    def _forget_all(self, items: list[Notification]) -> None:
        for i in items:
            self._forget(i)

    def _forget(self, item: Notification) -> None:
        self.pending.pop(item.order, None)
        dq = self.by_dep.get(item.deployment_id)
        if dq is not None and item in dq:
            if dq[0] is item:
                self.ready_at.pop(item.deployment_id, None)
            dq.remove(item)
            if not dq:
                del self.by_dep[item.deployment_id]

    def superseded(self, item: Notification) -> bool:
        """Whether a later notification of the same alert already reached the receiver."""
        with self.cond:
            return self.delivered.get((item.deployment_id, item.alert_type), 0) > item.sequence

    # -- delivering -----------------------------------------------------------------------
    def _next(self) -> Notification | None:
        with self.cond:
            while not self.stopping:
                now = time.monotonic()
                best: Notification | None = None
                wake: float | None = None
                for dep, dq in self.by_dep.items():
                    at = self.ready_at.get(dep, 0.0)
                    if at > now:
                        wake = at if wake is None else min(wake, at)
                    elif best is None or dq[0].order < best.order:
                        best = dq[0]
                if best is not None:
                    self.in_flight = best
                    return best
                self.cond.wait(None if wake is None else wake - now)
            return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            try:
                self.handler.send_alert(item.alert_type, item.metadata, **item.kwargs)
            except Exception as exc:
                self._failed(item, exc)
            else:
                self._done(item)

    # The item stays in_flight until its bookkeeping (outbox, dead letters) is handed on, so
    # whoever waits for idle sees a consistent outbox.
    def _release(self) -> None:
        with self.cond:
            self.in_flight = None
            self.cond.notify_all()

    def _done(self, item: Notification) -> None:
        self.owner.outbox_update("delete", item)
        with self.cond:
            self._forget(item)
            self.stats.sent += 1
            key = (item.deployment_id, item.alert_type)
            self.delivered[key] = max(self.delivered.get(key, 0), item.sequence)
        self._release()

    def _failed(self, item: Notification, exc: Exception) -> None:
        error = scrub(f"{type(exc).__name__}: {exc}", self.handler.secrets())
        permanent = isinstance(exc, NotifierError) and exc.permanent
        now = time.time()
        policy = self.retry
        with self.cond:
            item.attempts += 1
            item.last_error = error
            self.stats.failed += 1
            self.stats.last_error, self.stats.last_error_at = error, now
            give_up = permanent or policy.gives_up(item.attempts, now - item.created_at)
            if give_up:
                self._forget(item)
                item.dead_at = now
                self.stats.dead_lettered += 1
            else:
                delay = policy.delay(item.attempts, self.rng)
                self.ready_at[item.deployment_id] = time.monotonic() + delay
                self.stats.retried += 1
        name, what = self.handler.name, f"{item.alert_type} for {item.deployment_id}"
        about = {"deployment_id": item.deployment_id, "alert_type": item.alert_type}
        if give_up:
            why = "a permanent failure" if permanent else f"{item.attempts} tries"
            logger.error("alert handler %s: %s dead-lettered after %s: %s", name, what, why,
                         error, extra=about)  # fmt: skip
            self.owner.dead_letter(item)
        else:
            logger.warning(
                "alert handler %s: %s failed (try %d), retrying in %.2f s: %s",
                name, what, item.attempts, delay, error, extra=about,
            )  # fmt: skip
            self.owner.outbox_update("attempt", item)
        self._release()

    def idle(self) -> bool:
        return not self.pending and self.in_flight is None

    def stop(self, timeout: float) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout)
