"""Delivery: per-handler queues and workers, retries with backoff, dead letters, the outbox.

Import :class:`AlertDispatcher` from :mod:`.base`; this module holds its machinery.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, NotifierError, StoreError
from ..models import DeploymentMetadata
from ..outbox import Outbox, OutboxEntry
from ._util import scrub

if TYPE_CHECKING:
    from .base import AlertHandler

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


_order = itertools.count()


@dataclass
class _Item:
    handler_key: str
    alert_type: str
    metadata: DeploymentMetadata
    kwargs: dict[str, Any]
    row_id: int | None = None
    attempts: int = 0
    last_error: str | None = None
    created_at: float = field(default_factory=time.time)
    dead_at: float | None = None
    order: int = field(default_factory=lambda: next(_order))

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
    def from_entry(cls, e: OutboxEntry) -> _Item:
        try:
            meta = DeploymentMetadata.from_dict(e.metadata)
        except (TypeError, ValueError):
            # Written by another version of the model: the id is what matters.
            meta = DeploymentMetadata(deployment_id=e.deployment_id)
        return cls(e.handler_key, e.alert_type, meta, e.kwargs, e.row_id, e.attempts,
                   e.last_error, e.created_at, e.dead_at)  # fmt: skip


class _Worker:
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
        self.pending: OrderedDict[int, _Item] = OrderedDict()
        self.by_dep: dict[str, deque[_Item]] = {}
        self.ready_at: dict[str, float] = {}
        self.in_flight: _Item | None = None
        self.stopping = False
        self.rng = random.Random()
        self.thread = threading.Thread(target=self._run, name=f"alert-{key}", daemon=True)

    def put(self, item: _Item) -> _Item | None:
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

    def _forget(self, item: _Item) -> None:
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

    def _next(self) -> _Item | None:
        with self.cond:
            while not self.stopping:
                now = time.monotonic()
                best: _Item | None = None
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

    def _done(self, item: _Item) -> None:
        self.owner._outbox_call("delete", item.row_id)
        with self.cond:
            self._forget(item)
            self.stats.sent += 1
        self._release()

    def _failed(self, item: _Item, exc: Exception) -> None:
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


class AlertDispatcher:
    """Hands alerts to every handler without ever blocking the caller.

    Thread-safe. ``dispatch`` returns at once (after one small SQLite write when an outbox
    is configured); each handler drains its own bounded queue in its own thread, retrying
    per ``retry`` and dead-lettering what cannot be delivered. Every notification carries
    ``event_id`` (the same for all handlers) and ``sequence`` (per deployment, increasing)
    in its kwargs so receivers can dedupe and order.

    With ``outbox`` (an :class:`~..outbox.Outbox` or a file path) delivery is at-least-once
    across restarts: adding a handler whose ``key`` has undelivered rows re-queues them.

    >>> dispatcher = AlertDispatcher(queue_size=100)
    >>> dispatcher.dispatch("deployment_success", DeploymentMetadata("d1"), state="firing")
    >>> dispatcher.close()
    """

    def __init__(
        self,
        queue_size: int = 1000,
        *,
        retry: RetryPolicy | None = None,
        outbox: Outbox | str | Path | None = None,
        outbox_path: str | Path | None = None,
        dead_letter_limit: int = 1000,
    ) -> None:
        if queue_size < 1:
            raise ConfigError("queue_size", f"must be >= 1, got {queue_size}")
        self.queue_size = queue_size
        self.retry = retry or RetryPolicy()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._sequences: dict[str, int] = {}
        self._dead: deque[_Item] = deque(maxlen=dead_letter_limit)
        if outbox is None and outbox_path is not None:
            outbox = outbox_path
        self._owns_outbox = outbox is not None and not isinstance(outbox, Outbox)
        if outbox is not None and not isinstance(outbox, Outbox):
            outbox = Outbox(outbox, dead_limit=dead_letter_limit)
        self.outbox: Outbox | None = outbox
        if self.outbox is not None:
            for entry in reversed(self.outbox.dead(dead_letter_limit)):
                self._dead.append(_Item.from_entry(entry))

    def _outbox_call(self, method: str, *args: Any) -> None:
        if self.outbox is None or (args and args[0] is None):
            return
        try:
            getattr(self.outbox, method)(*args)
        except StoreError as exc:
            logger.error("alert outbox: %s failed: %s", method, exc)

    def add_handler(self, handler: AlertHandler) -> None:
        """Start delivering to ``handler``; re-queues its undelivered outbox rows first.

        Raises :class:`ConfigError` if another handler already uses the same ``key``.
        """
        with self._lock:
            used = {w.key for w in self._workers}
            key = handler.key
            if key is None:
                kind = handler.kind or type(handler).__name__.lower()
                key = next(f"{kind}-{i}" for i in itertools.count() if f"{kind}-{i}" not in used)
            elif key in used:
                raise ConfigError(
                    "key", f"handler key {key!r} is already in use; keys must be unique"
                )
            worker = _Worker(handler, key, self)
            if self.outbox is not None:
                try:
                    for entry in self.outbox.pending(key):
                        worker.put(_Item.from_entry(entry))
                except StoreError as exc:
                    logger.error("alert outbox: cannot re-queue for %s: %s", key, exc)
            worker.thread.start()
            self._workers.append(worker)

    def remove_handler(self, handler: AlertHandler) -> None:
        """Stop delivering to ``handler`` and forget its undelivered notifications."""
        with self._lock:
            workers = [w for w in self._workers if w.handler is handler]
            self._workers = [w for w in self._workers if w.handler is not handler]
        for w in workers:
            w.stop(1.0)
            self._outbox_call("delete_handler", w.key)

    @property
    def handlers(self) -> list[AlertHandler]:
        with self._lock:
            return [w.handler for w in self._workers]

    def handler_key(self, handler: AlertHandler) -> str | None:
        """The key ``handler`` is registered under (its outbox identity), or None."""
        with self._lock:
            return next((w.key for w in self._workers if w.handler is handler), None)

    def _next_sequence(self, deployment_id: str) -> int:
        if self.outbox is not None:
            try:
                return self.outbox.next_sequence(deployment_id)
            except StoreError as exc:
                logger.error("alert outbox: sequence failed: %s", exc)
        with self._lock:
            n = self._sequences.get(deployment_id, 0) + 1
            self._sequences[deployment_id] = n
            return n

    def dispatch(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        """Queue one notification for every handler (resolved ones only where wanted)."""
        resolved = kwargs.get("state") == "resolved"
        with self._lock:
            workers = [w for w in self._workers if not (resolved and not w.handler.send_resolved)]
        if not workers:
            return
        kwargs = dict(kwargs)
        kwargs.setdefault("event_id", uuid.uuid4().hex)
        if "sequence" not in kwargs:
            kwargs["sequence"] = self._next_sequence(metadata.deployment_id)
        now = time.time()
        items = [_Item(w.key, alert_type, metadata, kwargs, created_at=now) for w in workers]
        if self.outbox is not None:
            meta = metadata.to_dict()
            entries = [
                OutboxEntry(i.handler_key, metadata.deployment_id, alert_type, meta, kwargs,
                            kwargs["event_id"], int(kwargs["sequence"]), now)
                for i in items
            ]  # fmt: skip
            try:
                for item, row in zip(items, self.outbox.add(entries), strict=True):
                    item.row_id = row
            except StoreError as exc:
                # Delivery still happens, only without the crash guarantee.
                logger.error("alert outbox: write failed, delivering without it: %s", exc)
        for w, item in zip(workers, items, strict=True):
            dropped = w.put(item)
            if dropped is not None:
                logger.warning(
                    "alert handler %s: queue full, dropped %s for %s",
                    w.handler.name, dropped.alert_type, dropped.deployment_id,
                )  # fmt: skip
                self._outbox_call("delete", dropped.row_id)

    def _dead_letter(self, item: _Item) -> None:
        with self._lock:
            self._dead.append(item)
        self._outbox_call("mark_dead", item.row_id, item.attempts, item.last_error, item.dead_at)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Notifications given up on, oldest first (bounded; secrets scrubbed)."""
        with self._lock:
            return [i.to_dict() for i in self._dead]

    def retry_dead_letters(self, handler_key: str | None = None) -> int:
        """Queue dead letters (of one handler key, or all) again; returns how many."""
        with self._lock:
            by_key = {w.key: w for w in self._workers}
            chosen = [i for i in self._dead if i.handler_key in by_key
                      and (handler_key is None or i.handler_key == handler_key)]  # fmt: skip
            for i in chosen:
                self._dead.remove(i)
        for i in chosen:
            i.attempts, i.dead_at, i.order = 0, None, next(_order)
            self._outbox_call("revive", i.row_id)
            by_key[i.handler_key].put(i)
        return len(chosen)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Counters per handler, keyed by handler name (``name#i`` when names repeat)."""
        with self._lock:
            workers = list(self._workers)
            dead = [i.handler_key for i in self._dead]
        out: dict[str, dict[str, Any]] = {}
        for i, w in enumerate(workers):
            with w.cond:
                w.stats.queued = len(w.pending)
                d = w.stats.to_dict()
            d.update(key=w.key, kind=w.handler.kind, dead_letters=dead.count(w.key))
            name = w.handler.name
            out[name if name not in out else f"{name}#{i}"] = d
        return out

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queue is drained (retries included); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            with w.cond:
                if not w.cond.wait_for(w.idle, max(0.0, deadline - time.monotonic())):
                    return False
        return True

    def close(self, timeout: float = 1.0) -> None:
        """Stop the workers and close the handlers; undelivered rows stay in the outbox."""
        with self._lock:
            workers, self._workers = self._workers, []
        for w in workers:
            w.stop(timeout)
            w.handler.close()
        if self._owns_outbox and self.outbox is not None:
            self.outbox.close()
