"""How long and how often a failed notification is tried again: by age, not by count.

A receiver that is down for ten minutes loses nothing with the defaults: each notification
is tried again with a delay that doubles from ``initial`` up to ``max_delay`` (so once the
receiver is back everything queued reaches it within about ``max_delay``), and is only
given up (dead-lettered) once it is ``max_age`` old. Permanent failures (a 4xx other than
408/429, a refused login) are dead-lettered at once whatever the policy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from crackseg.utils.deployment.errors import ConfigError, require_positive

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Try ``n`` (1-based) failing schedules the next after
    ``min(max_delay, initial * 2 ** (n - 1))`` scaled by a random factor in
    ``[1 - jitter, 1]`` (receivers coming back are not hit by every sender at once). A
    notification older than ``max_age`` seconds (wall clock since it was queued, across
    restarts) is dead-lettered at its next failure; so is one that failed ``max_attempts``
    times, when that is set.

    >>> RetryPolicy(initial=1.0, max_delay=8.0, jitter=0.0).delay(5)
    8.0
    """

    initial: float = 1.0
    max_delay: float = 30.0
    max_age: float = 3600.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        for name in ("initial", "max_delay", "max_age"):
            require_positive(name, getattr(self, name))
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError("jitter", f"must be between 0 and 1, got {self.jitter!r}")
        if self.max_attempts is not None:
            require_positive("max_attempts", self.max_attempts)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        raw = min(self.max_delay, self.initial * 2 ** max(0, attempt - 1))
        return float(raw * (1.0 - self.jitter * (rng or random).random()))

    def gives_up(self, attempts: int, age: float) -> bool:
        """Whether a notification tried ``attempts`` times and ``age`` seconds old is done."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return age >= self.max_age
