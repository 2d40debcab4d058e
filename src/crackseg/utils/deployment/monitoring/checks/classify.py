"""How an HTTP answer becomes a health result: the status code and the body's own word.

Every HTTP-speaking checker shares it, so one answer reads the same on every path.
"""

from __future__ import annotations

from typing import Any

import orjson

from crackseg.utils.deployment.models import HealthCheckResult, HealthStatus
from crackseg.utils.deployment.monitoring.version import read_version

__all__ = ["classify_response"]


def classify_response(
    status_code: int, body: bytes, response_time_ms: float, content_type: str | None = None
) -> HealthCheckResult:
    """Turn an HTTP answer into a result.

    2xx is healthy unless a JSON body says ``"status": "degraded"`` or ``"unhealthy"``; any
    other code is unhealthy, except that a body saying ``"status": "degraded"`` reads as
    degraded whatever the code (the spec's example endpoint answers 503 so). A JSON body's
    ``version`` is recorded as ``details["version"]`` (:mod:`..version`).
    """
    details: dict[str, Any] = {"http_status": status_code}
    body_status, version = _read_body(body, content_type)
    if body_status is not None:
        details["body_status"] = body_status
    if version is not None:
        details["version"] = version
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


# A body's reading: the status it states and the version it reports (each None if absent).
_Reading = tuple[str | None, str | None]
_NOTHING: _Reading = (None, None)

# Health endpoints answer the same few small bodies over and over: their reading is kept
# (bounded) instead of parsing the JSON on every check.
_SEEN: dict[tuple[bytes, str | None], _Reading] = {}
_SEEN_MAX = 1024
_SEEN_BODY = 256


def _read_body(body: bytes, content_type: str | None) -> _Reading:
    if len(body) > _SEEN_BODY:
        return _parse(body, content_type)
    key = (body, content_type)
    try:
        return _SEEN[key]
    except KeyError:
        pass
    value = _parse(body, content_type)
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[key] = value
    return value


def _parse(body: bytes, content_type: str | None) -> _Reading:
    if not body or body[:1] not in (b"{", b" ", b"\n", b"\r", b"\t"):
        return _NOTHING
    if content_type is not None and "json" not in content_type and body[:1] != b"{":
        return _NOTHING
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NOTHING
    if not isinstance(data, dict):
        return _NOTHING
    version = data.get("version")
    return _status_word(data.get("status")), None if version is None else read_version(version)


def _status_word(value: object) -> str | None:
    if isinstance(value, str):
        value = value.lower()
        if value in ("healthy", "degraded", "unhealthy"):
            return value
        if value in ("ok", "up", "pass"):
            return "healthy"
        if value in ("down", "fail", "error"):
            return "unhealthy"
    return None
