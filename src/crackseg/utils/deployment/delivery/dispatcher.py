"""Delivery: per-handler queues and workers, retries by age, dead letters, the outbox.

Import :class:`AlertDispatcher` from :mod:`.base`; this module holds its machinery.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Collection
from pathlib import Path
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.outbox import Outbox
from crackseg.utils.deployment.delivery.outbox_writer import OutboxWriter
from crackseg.utils.deployment.delivery.record import Notification
from crackseg.utils.deployment.delivery.retry import RetryPolicy
from crackseg.utils.deployment.delivery.routing import accepts
from crackseg.utils.deployment.delivery.worker import Worker
from crackseg.utils.deployment.errors import ConfigError, StoreError
from crackseg.utils.deployment.models import DeploymentMetadata

__all__ = ["AlertDispatcher"]

logger = logging.getLogger("crackseg.utils.deployment.alerts")


class AlertDispatcher:
    """Hands alerts to every handler without ever blocking the caller.

    Thread-safe. ``dispatch`` returns at once: each handler drains its own bounded queue in
    its own thread, retrying per its ``retry`` policy (else the dispatcher's) and
    dead-lettering what cannot be delivered. Every notification carries ``event_id`` (the
    same for all handlers) and ``sequence`` (per deployment, increasing) in its kwargs so
    receivers can dedupe and order.

    With ``outbox`` (an :class:`~.outbox.Outbox` or a file path) delivery is at-least-once
    across restarts: rows are committed by a writer thread within milliseconds of
    ``dispatch`` (:meth:`flush_outbox` waits for it), and adding a handler whose ``key`` has
    undelivered rows re-queues them.

    >>> dispatcher = AlertDispatcher(queue_size=100)
    >>> dispatcher.dispatch("deployment_success", DeploymentMetadata("d1"), state="firing")
    []
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
        self._workers: list[Worker] = []
        self._lock = threading.Lock()
        self._dispatch_lock = threading.Lock()
        self._sequences: dict[str, int] = {}
        self._dead: deque[Notification] = deque(maxlen=dead_letter_limit)
        #: Notifications no handler's match accepted (while there were handlers).
        self.unrouted = 0
        if outbox is None and outbox_path is not None:
            outbox = outbox_path
        self._owns_outbox = outbox is not None and not isinstance(outbox, Outbox)
        if outbox is not None and not isinstance(outbox, Outbox):
            outbox = Outbox(outbox, dead_limit=dead_letter_limit)
        self.outbox: Outbox | None = outbox
        self._writer: OutboxWriter | None = None
        if self.outbox is not None:
            self._sequences = self.outbox.sequences()
            for entry in reversed(self.outbox.dead(dead_letter_limit)):
                self._dead.append(entry)
            self._writer = OutboxWriter(self.outbox)

    def outbox_update(self, kind: str, item: Notification) -> None:
        """Record ``item``'s new state (``delete``, ``attempt``, ``dead``, ``revive``) in the
        outbox, if there is one; returns at once (the writer thread commits it)."""
        if self._writer is not None:
            self._writer.update(kind, item)

    def flush_outbox(self, timeout: float = 10.0) -> bool:
        """Wait until every outbox write so far is committed; False on timeout."""
        return self._writer.flush(timeout) if self._writer is not None else True

    def add_handler(self, handler: AlertHandler) -> None:
        """Start delivering to ``handler``; re-queues its undelivered outbox rows first.

        Raises :class:`ConfigError` if another handler already uses the same ``key``.
        """
        with self._lock:
            used = {w.key for w in self._workers}
            key = handler.key
            if key is None:
                # Kind and target, so a restart finds its outbox rows whatever the order.
                base = handler.default_key()
                key = next(k for k in itertools.chain([base], (f"{base}#{i}" for i in
                           itertools.count(2))) if k not in used)  # fmt: skip
            elif key in used:
                raise ConfigError(
                    "key", f"handler key {key!r} is already in use; keys must be unique"
                )
            worker = Worker(handler, key, self)
            if self.outbox is not None:
                try:
                    self.flush_outbox()  # rows of a handler removed a moment ago (a reload)
                    for entry in self.outbox.pending(key):
                        worker.put(entry)
                except StoreError as exc:
                    logger.error("alert outbox: cannot re-queue for %s: %s", key, exc)
            worker.thread.start()
            self._workers.append(worker)

    def remove_handler(self, handler: AlertHandler, *, forget: bool = False) -> None:
        """Stop delivering to ``handler`` (the caller closes it).

        Its undelivered notifications stay in the outbox, so a handler added later under
        the same key (a config reload) delivers them; ``forget=True`` drops them.
        """
        with self._lock:
            workers = [w for w in self._workers if w.handler is handler]
            self._workers = [w for w in self._workers if w.handler is not handler]
        for w in workers:
            w.stop(1.0)
            if forget and self._writer is not None:
                self._writer.forget(w.key)
        if workers:
            self.flush_outbox()  # not on a check path: a reload may read the rows next

    @property
    def handlers(self) -> list[AlertHandler]:
        with self._lock:
            return [w.handler for w in self._workers]

    def handler_key(self, handler: AlertHandler) -> str | None:
        """The key ``handler`` is registered under (its outbox identity), or None."""
        with self._lock:
            return next((w.key for w in self._workers if w.handler is handler), None)

    def handler_keys(self) -> list[str]:
        """The keys of the handlers delivered to, in the order they were added."""
        with self._lock:
            return [w.key for w in self._workers]

    def route(self, alert_type: str, deployment_id: str, severity: str) -> list[str]:
        """The keys of the handlers whose :class:`~.routing.Match` accepts a notification
        with these facts (a handler without one accepts all). When there are handlers and
        none accepts it, it is counted as unrouted (:attr:`unrouted`)."""
        with self._lock:
            workers = list(self._workers)
        keys = [w.key for w in workers if accepts(w.handler, alert_type, deployment_id, severity)]
        if workers and not keys:
            with self._lock:
                self.unrouted += 1
        return keys

    def orphaned_rows(self) -> dict[str, int]:
        """Undelivered outbox rows of keys no handler has (renamed or removed handlers)."""
        if self.outbox is None:
            return {}
        self.flush_outbox()
        keys = set(self.handler_keys())
        return {k: n for k, n in self.outbox.pending_keys().items() if k not in keys}

    def restore(
        self, handler_keys: Collection[str], alert_type: str, metadata: DeploymentMetadata,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        """Tell the handlers in ``handler_keys`` that an alert they were sent before a
        restart is still firing (:meth:`AlertHandler.restore_firing`); nothing is sent."""
        with self._lock:
            handlers = [w.handler for w in self._workers if w.key in handler_keys]
        for h in handlers:
            try:
                h.restore_firing(alert_type, metadata, **kwargs)
            except Exception:
                logger.exception("alert handler %s: restore failed", h.name)

    def dispatch(
        self,
        alert_type: str,
        metadata: DeploymentMetadata,
        *,
        handler_keys: Collection[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Queue one notification for every handler whose match accepts it (resolved ones
        only where wanted), or exactly for those whose key is in ``handler_keys`` (a resolve
        goes where its firing went); returns the keys it was queued for.

        Never waits for the disk: with an outbox, its rows are written by a writer thread.
        """
        resolved = kwargs.get("state") == "resolved"
        if handler_keys is None:
            severity = str(kwargs.get("severity", ""))
            handler_keys = self.route(alert_type, metadata.deployment_id, severity)
        with self._lock:
            workers = [
                w
                for w in self._workers
                if not (resolved and not w.handler.send_resolved) and w.key in handler_keys
            ]
        if not workers:
            return []
        # Numbering and queueing under one lock: sequence order is delivery order, even
        # when several threads (monitor, orchestrator) dispatch for the same deployment.
        with self._dispatch_lock:
            dep = metadata.deployment_id
            kwargs = dict(kwargs)
            kwargs.setdefault("event_id", uuid.uuid4().hex)
            if "sequence" not in kwargs:
                kwargs["sequence"] = self._sequences.get(dep, 0) + 1
                self._sequences[dep] = kwargs["sequence"]
            now = time.time()
            items = [Notification(w.key, alert_type, metadata, kwargs, created_at=now)
                     for w in workers]  # fmt: skip
            if self._writer is not None:
                self._writer.add(items)
            for w, item in zip(workers, items, strict=True):
                for gone in w.put(item):
                    logger.warning(
                        "alert handler %s: queue full, %s %s for %s left it unsent"
                        " (coalesced or dropped; see its stats)",
                        w.handler.name, gone.state, gone.alert_type, gone.deployment_id,
                    )  # fmt: skip
                    self.outbox_update("delete", gone)
        return [w.key for w in workers]

    def dead_letter(self, item: Notification) -> None:
        """Keep ``item``, given up on by its worker, among the dead letters."""
        with self._lock:
            self._dead.append(item)
        self.outbox_update("dead", item)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Notifications given up on, oldest first (bounded; secrets scrubbed)."""
        with self._lock:
            return [i.to_dict() for i in self._dead]

    def retry_dead_letters(self, handler_key: str | None = None) -> int:
        """Queue dead letters (of one handler key, or all) again; returns how many.

        Each goes out before its deployment's later notifications still queued. One that a
        later notification of the same alert already overtook (a firing whose resolve was
        delivered) would undo it: it is dropped instead of sent.
        """
        with self._lock:
            by_key = {w.key: w for w in self._workers}
            chosen = [i for i in self._dead if i.handler_key in by_key
                      and (handler_key is None or i.handler_key == handler_key)]  # fmt: skip
            for i in chosen:
                self._dead.remove(i)
        queued = 0
        for i in chosen:
            worker = by_key[i.handler_key]
            if worker.superseded(i):
                logger.info("dead letter %s for %s skipped: a later one was delivered",
                            i.alert_type, i.deployment_id)  # fmt: skip
                self.outbox_update("delete", i)
                continue
            # Its age counts from now: retrying it is a new decision to deliver it.
            i.attempts, i.dead_at, i.created_at = 0, None, time.time()
            self.outbox_update("revive", i)
            worker.put(i)
            queued += 1
        return queued

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
            extra = w.handler.extra_stats()
            if extra:
                d["channel"] = extra
            name = w.handler.name
            out[name if name not in out else f"{name}#{i}"] = d
        return out

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queue is drained (retries included) and the outbox written;
        False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            with w.cond:
                if not w.cond.wait_for(w.idle, max(0.0, deadline - time.monotonic())):
                    return False
        return self.flush_outbox(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 1.0) -> None:
        """Stop the workers and close the handlers; undelivered rows stay in the outbox."""
        with self._lock:
            workers, self._workers = self._workers, []
        for w in workers:
            w.stop(timeout)
            w.handler.close()
        if self._writer is not None:
            self._writer.close()
        if self._owns_outbox and self.outbox is not None:
            self.outbox.close()
