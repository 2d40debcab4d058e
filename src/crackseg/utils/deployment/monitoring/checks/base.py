"""Health checks: the :class:`HealthChecker` interface and the result of a failed check.

The default implementation lives in :mod:`.http`; how an answer becomes a status, in
:mod:`.classify` (re-exported here).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from typing import Any

from crackseg.utils.deployment.models import HealthCheckResult, HealthStatus
from crackseg.utils.deployment.monitoring.checks.classify import classify_response

__all__ = ["MAX_BODY_BYTES", "HealthChecker", "checker_error", "classify_response", "failure"]


MAX_BODY_BYTES = 64 * 1024


class HealthChecker(ABC):
    """Checks whether a service answers healthily.

    Subclass it and implement the two synchronous methods (the spec's "Custom
    Implementations"); the async twins run them in a worker thread unless overridden.

    >>> class AlwaysUp(HealthChecker):
    ...     def check_health(self, url, timeout=10):
    ...         return HealthCheckResult(True, "healthy", 0.0)
    ...     def wait_for_healthy(self, url, max_wait=300, interval=5):
    ...         return True
    """

    @abstractmethod
    def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
        """Check ``url`` once; never raise for a failed check, return an unhealthy result."""

    @abstractmethod
    def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
        """Return True as soon as ``url`` is healthy, False once ``max_wait`` seconds pass."""

    async def check_health_async(self, url: str, timeout: float = 10) -> HealthCheckResult:
        """Async twin of :meth:`check_health`."""
        return await asyncio.to_thread(self.check_health, url, timeout)  # type: ignore[arg-type]

    async def wait_for_healthy_async(
        self, url: str, max_wait: float = 300, interval: float = 5
    ) -> bool:
        """Async twin of :meth:`wait_for_healthy`."""
        return await asyncio.to_thread(
            self.wait_for_healthy,
            url,
            max_wait,  # type: ignore[arg-type]
            interval,  # type: ignore[arg-type]
        )

    async def release_loop(self) -> None:
        """Release what this checker holds for the running loop (its connections there);
        the monitor calls it before its loop ends. Nothing by default."""

    def close(self) -> None:
        """Release connections and threads. Safe to call twice."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()


def failure(message: str, response_time_ms: float, **details: Any) -> HealthCheckResult:
    """An unhealthy result for a check that got no usable answer."""
    return HealthCheckResult(
        False,
        HealthStatus.UNHEALTHY.value,
        response_time_ms,
        error_message=message,
        details=details,
    )


def checker_error(exc: BaseException, started: float) -> HealthCheckResult:
    """An unhealthy result for a checker that raised ``exc``, timed from ``started``
    (``time.monotonic()``). Only the exception's type is said: a custom checker's message
    may carry a URL's credentials."""
    return failure(f"checker error: {type(exc).__name__}", (time.monotonic() - started) * 1000.0)
