"""The alert-handler interface and the delivery that keeps handlers off the check path.

Every channel implements :meth:`AlertHandler.send_alert` (the spec's signature). The
monitor never calls a handler on its event loop: :class:`AlertDispatcher` gives each
handler a worker thread behind a bounded queue, so a handler that raises or blocks never
stops or delays checking, nor the other handlers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..models import DeploymentMetadata

logger = logging.getLogger("crackseg.utils.deployment.alerts")


class AlertHandler(ABC):
    """Delivers alerts to one channel.

    ``send_alert`` receives the alert type (``health_check_failed``, ``high_cpu_usage``,
    ``deployment_success``, ...), the deployment's metadata, and keyword facts: at least
    ``severity``, ``message``, ``value``, ``threshold``, ``state`` (``"firing"`` or
    ``"resolved"``), ``firing`` and ``resolved`` (bools). Raise to report a failed delivery.

    >>> class PrintHandler(AlertHandler):
    ...     def send_alert(self, alert_type, metadata, **kwargs):
    ...         print(alert_type, metadata.deployment_id, kwargs["state"])
    """

    #: Whether resolved notices go to this handler.
    send_resolved: bool = True

    @abstractmethod
    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        """Deliver one alert; raise on failure."""

    @property
    def name(self) -> str:
        """A label for status and metrics; never contains a secret."""
        return type(self).__name__

    def close(self) -> None:
        """Release resources. Safe to call twice."""


@dataclass
class HandlerStats:
    """Delivery counters of one handler."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    queued: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "queued": self.queued,
        }


@dataclass
class _Delivery:
    alert_type: str
    metadata: DeploymentMetadata
    kwargs: dict[str, Any] = field(default_factory=dict)


_STOP = object()


class _Worker:
    def __init__(self, handler: AlertHandler, maxsize: int) -> None:
        self.handler = handler
        self.stats = HandlerStats()
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self.thread = threading.Thread(target=self._run, name=f"alert-{handler.name}", daemon=True)
        self.thread.start()

    def put(self, delivery: _Delivery) -> None:
        while True:
            try:
                self.queue.put_nowait(delivery)
                return
            except queue.Full:
                # Keep the newest: an old notice is worth less than the current state.
                try:
                    self.queue.get_nowait()
                    self.queue.task_done()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                self.queue.task_done()
                return
            try:
                self.handler.send_alert(item.alert_type, item.metadata, **item.kwargs)
                self.stats.sent += 1
            except Exception as exc:
                self.stats.failed += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self.stats.last_error_at = time.time()
                # The exception text may hold a URL with a token: log only its type.
                logger.warning("alert handler %s failed: %s", self.handler.name, type(exc).__name__)
            finally:
                if item is not _STOP:
                    self.queue.task_done()

    def stop(self, timeout: float) -> None:
        try:
            self.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self.thread.join(timeout)


class AlertDispatcher:
    """Hands alerts to every handler without ever blocking the caller.

    Thread-safe. ``dispatch`` returns at once; each handler drains its own bounded queue in
    its own thread.
    """

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    def add_handler(self, handler: AlertHandler) -> None:
        with self._lock:
            self._workers.append(_Worker(handler, self._queue_size))

    def remove_handler(self, handler: AlertHandler) -> None:
        with self._lock:
            workers = [w for w in self._workers if w.handler is handler]
            self._workers = [w for w in self._workers if w.handler is not handler]
        for w in workers:
            w.stop(1.0)

    @property
    def handlers(self) -> list[AlertHandler]:
        with self._lock:
            return [w.handler for w in self._workers]

    def dispatch(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        resolved = kwargs.get("state") == "resolved"
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            if resolved and not getattr(w.handler, "send_resolved", True):
                continue
            w.put(_Delivery(alert_type, metadata, kwargs))

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            workers = list(self._workers)
        out: dict[str, dict[str, Any]] = {}
        for i, w in enumerate(workers):
            w.stats.queued = w.queue.qsize()
            key = w.handler.name if w.handler.name not in out else f"{w.handler.name}#{i}"
            out[key] = w.stats.to_dict()
        return out

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queue is drained (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            while w.queue.unfinished_tasks and time.monotonic() < deadline:
                time.sleep(0.01)
        return all(not w.queue.unfinished_tasks for w in workers)

    def close(self, timeout: float = 1.0) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for w in workers:
            w.stop(timeout)
            w.handler.close()
