"""The per-handler half of delivery: one queue, one thread, retries with backoff.

Private: :class:`~.delivery.AlertDispatcher` owns the workers.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crackseg.utils.deployment.delivery.options import scrub
from crackseg.utils.deployment.delivery.outbox import OutboxEntry
from crackseg.utils.deployment.errors import NotifierError
from crackseg.utils.deployment.models import DeploymentMetadata

__all__ = ["Delivery", "HandlerStats", "RetryPolicy", "Worker", "order_counter"]


if TYPE_CHECKING:
    from crackseg.utils.deployment.delivery.base import AlertHandler
    from crackseg.utils.deployment.delivery.dispatcher import AlertDispatcher

logger = logging.getLogger("crackseg.utils.deployment.alerts")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed notification is tried again.

    Try ``n`` (1-based) failing schedules the next one after
    ``min(max_delay, base_delay * 2 ** (n - 1))`` scaled by a random factor in
    ``[1 - jitter, 1]``, so receivers coming back are not hit by every sender at once.
    After ``max_attempts`` tries, or at once for a permanent error, it is dead-lettered.

    >>> RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=0.0).delay(5)
    8.0
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        raw = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return float(raw * (1.0 - self.jitter * (rng or random).random()))


@dataclass
class HandlerStats:
    """Delivery counters of one handler. ``failed`` counts failed tries, ``retried`` the
    tries scheduled again, ``dead_lettered`` the notifications given up, ``dropped`` those
    pushed out of a full queue."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
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
            "dropped": self.dropped,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "queued": self.queued,
        }


order_counter = itertools.count()


@dataclass
class Delivery:
    handler_key: str
    alert_type: str
    metadata: DeploymentMetadata
    kwargs: dict[str, Any]
    row_id: int | None = None
    attempts: int = 0
    last_error: str | None = None
    created_at: float = field(default_factory=time.time)
    dead_at: float | None = None
    order: int = field(default_factory=lambda: next(order_counter))

    @property
    def deployment_id(self) -> str:
        return self.metadata.deployment_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.row_id,
            "handler_key": self.handler_key,
            "deployment_id": self.deployment_id,
            "alert_type": self.alert_type,
            "state": self.kwargs.get("state"),
            "event_id": self.kwargs.get("event_id"),
            "sequence": self.kwargs.get("sequence"),
            "created_at": self.created_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "dead_at": self.dead_at,
        }

    @classmethod
    def from_entry(cls, e: OutboxEntry) -> Delivery:
        try:
            meta = DeploymentMetadata.from_dict(e.metadata)
        except (TypeError, ValueError):
            # Written by another version of the model: the id is what matters.
            meta = DeploymentMetadata(deployment_id=e.deployment_id)
        return cls(e.handler_key, e.alert_type, meta, e.kwargs, e.row_id, e.attempts,
                   e.last_error, e.created_at, e.dead_at)  # fmt: skip


class Worker:
    """One handler's queue and thread.

    Notifications of one deployment leave in order; while the head of a deployment waits
    for its retry, other deployments' notifications go ahead.
    """

    def __init__(self, handler: AlertHandler, key: str, owner: AlertDispatcher) -> None:
        self.handler = handler
        self.key = key
        self.owner = owner
        self.stats = HandlerStats()
        self.cond = threading.Condition()
        self.pending: OrderedDict[int, Delivery] = OrderedDict()
        self.by_dep: dict[str, deque[Delivery]] = {}
        self.ready_at: dict[str, float] = {}
        self.in_flight: Delivery | None = None
        self.stopping = False
        self.rng = random.Random()
        self.thread = threading.Thread(target=self._run, name=f"alert-{key}", daemon=True)

    def put(self, item: Delivery) -> Delivery | None:
        """Queue ``item``; returns the oldest waiting item pushed out when the queue is full."""
        dropped = None
        with self.cond:
            if len(self.pending) >= self.owner.queue_size:
                # Keep the newest: an old notice is worth less than the current state.
                victim = next((i for i in self.pending.values() if i is not self.in_flight), None)
                if victim is not None:
                    self._forget(victim)
                    self.stats.dropped += 1
                    dropped = victim
            self.pending[item.order] = item
            self.by_dep.setdefault(item.deployment_id, deque()).append(item)
            self.cond.notify_all()
        return dropped

    def _forget(self, item: Delivery) -> None:
        self.pending.pop(item.order, None)
        dq = self.by_dep.get(item.deployment_id)
        if dq is not None:
            if dq and dq[0] is item:
                dq.popleft()
                self.ready_at.pop(item.deployment_id, None)
            else:
                dq.remove(item)
            if not dq:
                del self.by_dep[item.deployment_id]

    def _next(self) -> Delivery | None:
        with self.cond:
            while not self.stopping:
                now = time.monotonic()
                best: Delivery | None = None
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

    # The item stays in_flight until its bookkeeping (outbox, dead letters) is written, so
    # whoever waits for idle sees a consistent outbox.
    def _release(self) -> None:
        with self.cond:
            self.in_flight = None
            self.cond.notify_all()

    def _done(self, item: Delivery) -> None:
        self.owner._outbox_call("delete", item.row_id)
        with self.cond:
            self._forget(item)
            self.stats.sent += 1
        self._release()

    def _failed(self, item: Delivery, exc: Exception) -> None:
        error = scrub(f"{type(exc).__name__}: {exc}", self.handler.secrets())
        permanent = isinstance(exc, NotifierError) and exc.permanent
        now = time.time()
        with self.cond:
            item.attempts += 1
            item.last_error = error
            self.stats.failed += 1
            self.stats.last_error, self.stats.last_error_at = error, now
            give_up = permanent or item.attempts >= self.owner.retry.max_attempts
            if give_up:
                self._forget(item)
                item.dead_at = now
                self.stats.dead_lettered += 1
            else:
                delay = self.owner.retry.delay(item.attempts, self.rng)
                self.ready_at[item.deployment_id] = time.monotonic() + delay
                self.stats.retried += 1
        name, what = self.handler.name, f"{item.alert_type} for {item.deployment_id}"
        if give_up:
            why = "permanent failure" if permanent else f"{item.attempts} tries"
            logger.error("alert handler %s: %s dead-lettered after %s: %s", name, what, why, error)
            self.owner._dead_letter(item)
        else:
            logger.warning(
                "alert handler %s: %s failed (try %d/%d), retrying in %.2f s: %s",
                name, what, item.attempts, self.owner.retry.max_attempts, delay, error,
            )  # fmt: skip
            self.owner._outbox_call("record_attempt", item.row_id, item.attempts, error)
        self._release()

    def idle(self) -> bool:
        return not self.pending and self.in_flight is None

    def stop(self, timeout: float) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout)
