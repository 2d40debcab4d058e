"""The "none" router: you switch traffic yourself; the orchestrator tells you when and where."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from crackseg.utils.deployment.errors import RouterError
from crackseg.utils.deployment.rollout.routers.base import Backend, TrafficRouter

__all__ = ["CallbackRouter"]


class CallbackRouter(TrafficRouter):
    """Calls ``fn(backends)`` for each change and records the backends once it returns.

    ``fn`` must return only when the new weights are in force (that is the router contract).
    If it raises, :class:`RouterError` is raised (chained) and :meth:`current` keeps the previous
    backends. ``fn`` may be None: then changes are only recorded (useful when nothing routes,
    e.g. a single instance behind a fixed address). ``public_url`` is whatever you pass.
    Calls are serialised: ``fn`` never runs twice at once.
    """

    def __init__(
        self,
        fn: Callable[[list[Backend]], object] | None = None,
        *,
        public_url: str | None = None,
    ) -> None:
        self._fn = fn
        self._public_url = public_url
        self._lock = threading.Lock()
        self._current: list[Backend] = []
        self.history: deque[list[Backend]] = deque(maxlen=1000)  # applied changes, oldest first

    @property
    def public_url(self) -> str | None:
        return self._public_url

    def apply(self, backends: list[Backend]) -> None:
        if not any(b.weight > 0 for b in backends):
            raise RouterError("apply needs at least one backend with weight > 0")
        if any(b.weight < 0 for b in backends):
            raise RouterError("backend weights must be >= 0")
        with self._lock:
            if self._fn is not None:
                try:
                    self._fn(list(backends))
                except Exception as exc:
                    raise RouterError(f"traffic switch callback failed: {exc}") from exc
            self._current = list(backends)
            self.history.append(list(backends))

    def current(self) -> list[Backend]:
        with self._lock:
            return list(self._current)
