"""Flapping: a deployment that changes state too often alerts once instead of paging each time.

:class:`FlapDetector` is a pure state machine the monitor consults on each status change.
"""

from __future__ import annotations

from collections import deque

from crackseg.utils.deployment.errors import ConfigError, require_positive

__all__ = ["FlapDetector"]


class FlapDetector:
    """Tells whether a deployment changes state more than ``max_changes`` times within
    ``window_s`` seconds. Pure: feed it every observed status with its time.

    >>> flaps = FlapDetector(max_changes=2, window_s=60)
    >>> [flaps.record("api", s, t) for t, s in enumerate(["up", "down", "up", "down"])]
    [False, False, False, True]
    """

    def __init__(self, max_changes: int = 5, window_s: float = 600.0) -> None:
        if max_changes < 1:
            raise ConfigError("max_changes", f"must be >= 1, got {max_changes}")
        require_positive("window_s", window_s)
        self.max_changes = max_changes
        self.window_s = window_s
        self._last: dict[str, str] = {}
        self._changes: dict[str, deque[float]] = {}

    def record(self, deployment_id: str, status: str, now: float) -> bool:
        """Note ``status`` at ``now``; returns whether the deployment is flapping."""
        previous = self._last.get(deployment_id)
        if previous == status:  # the common case, on every check: no change to note
            return deployment_id in self._changes and self.is_flapping(deployment_id, now)
        self._last[deployment_id] = status
        if previous is not None:
            changes = self._changes.get(deployment_id)
            if changes is None:
                changes = self._changes[deployment_id] = deque(maxlen=self.max_changes + 1)
            changes.append(now)
        return self.is_flapping(deployment_id, now)

    def is_flapping(self, deployment_id: str, now: float) -> bool:
        changes = self._changes.get(deployment_id)
        if not changes:
            return False
        while changes and changes[0] <= now - self.window_s:
            changes.popleft()
        return len(changes) > self.max_changes

    def forget(self, deployment_id: str) -> None:
        self._last.pop(deployment_id, None)
        self._changes.pop(deployment_id, None)
