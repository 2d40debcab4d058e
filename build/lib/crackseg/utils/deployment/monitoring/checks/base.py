"""Health checks: the :class:`HealthChecker` interface and how a response becomes a status.

The default implementation lives in :mod:`.http`; this module holds the contract
and the classification every checker shares.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

import orjson

from crackseg.utils.deployment.models import HealthCheckResult, HealthStatus

__all__ = ["MAX_BODY_BYTES", "HealthChecker", "classify_response", "failure"]


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

    def close(self) -> None:
        """Release connections and threads. Safe to call twice."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()


def classify_response(
    status_code: int, body: bytes, response_time_ms: float, content_type: str | None = None
) -> HealthCheckResult:
    """Turn an HTTP answer into a result.

    2xx is healthy unless a JSON body says ``"status": "degraded"`` or ``"unhealthy"``; any
    other code is unhealthy, except that a body saying ``"status": "degraded"`` reads as
    degraded whatever the code (the spec's example endpoint answers 503 so).
    """
    details: dict[str, Any] = {"http_status": status_code}
    body_status = _body_status(body, content_type)
    if body_status is not None:
        details["body_status"] = body_status
    if 200 <= status_code < 300:
        if body_status in ("degraded", "unhealthy"):
            return HealthCheckResult(
                False,
                body_status,
                response_time_ms,
                error_message=f"service reports {body_status} (HTTP {status_code})",
                details=details,
            )
        return HealthCheckResult(
            True, HealthStatus.HEALTHY.value, response_time_ms, details=details
        )
    if body_status == "degraded":
        return HealthCheckResult(
            False,
            HealthStatus.DEGRADED.value,
            response_time_ms,
            error_message=f"service reports degraded (HTTP {status_code})",
            details=details,
        )
    return HealthCheckResult(
        False,
        HealthStatus.UNHEALTHY.value,
        response_time_ms,
        error_message=f"HTTP {status_code}",
        details=details,
    )


def failure(message: str, response_time_ms: float, **details: Any) -> HealthCheckResult:
    """An unhealthy result for a check that got no usable answer."""
    return HealthCheckResult(
        False,
        HealthStatus.UNHEALTHY.value,
        response_time_ms,
        error_message=message,
        details=details,
    )


# Health endpoints answer the same few small bodies over and over: their reading is kept
# (bounded) instead of parsing the JSON on every check.
_SEEN: dict[tuple[bytes, str | None], str | None] = {}
_SEEN_MAX = 1024
_SEEN_BODY = 256


def _body_status(body: bytes, content_type: str | None) -> str | None:
    if len(body) > _SEEN_BODY:
        return _read_status(body, content_type)
    key = (body, content_type)
    try:
        return _SEEN[key]
    except KeyError:
        pass
    value = _read_status(body, content_type)
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[key] = value
    return value


def _read_status(body: bytes, content_type: str | None) -> str | None:
    if not body or body[:1] not in (b"{", b" ", b"\n", b"\r", b"\t"):
        return None
    if content_type is not None and "json" not in content_type and body[:1] != b"{":
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict):
        value = data.get("status")
        if isinstance(value, str):
            value = value.lower()
            if value in ("healthy", "degraded", "unhealthy"):
                return value
            if value in ("ok", "up", "pass"):
                return "healthy"
            if value in ("down", "fail", "error"):
                return "unhealthy"
    return None
