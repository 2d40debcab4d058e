"""What a check's HTTP answer, or the error that took its place, becomes: a result whose
message names the cause (``HTTP 500``, ``timeout after 10s``, ``connection refused``...)."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from typing import Any

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks._fastconn import (
    ClientClosedError,
    ConnectionClosedError,
    FastResponse,
    InvalidResponseError,
    PoolTimeoutError,
)
from crackseg.utils.deployment.monitoring.checks.base import failure
from crackseg.utils.deployment.monitoring.checks.classify import classify_response
from crackseg.utils.deployment.monitoring.checks.conditions import Observation
from crackseg.utils.deployment.monitoring.checks.plan import CheckPlan, judge, transport_failed
from crackseg.utils.deployment.monitoring.version import read_version
from crackseg.utils.deployment.redact import redact_text

__all__ = ["answer", "describe", "failed", "is_redirect", "judge_answer", "ms_since", "settled"]


def is_redirect(resp: FastResponse) -> bool:
    """A 3xx with somewhere to go (not 304)."""
    return 300 <= resp.status < 400 and resp.status != 304 and resp.location is not None


def answer(
    resp: FastResponse, start: float, hops: int, plan: CheckPlan | None = None
) -> HealthCheckResult:
    """The result of an answer that is not followed further (``hops`` redirects taken):
    judged by ``plan``'s conditions when it has any, else by the default reading."""
    status = resp.status
    ms = (resp.received - start) * 1000.0
    if is_redirect(resp):
        shown = redact_text(resp.location or "")
        return failure(
            f"HTTP {status} redirect to {shown} (redirects not followed)",
            ms,
            http_status=status,
            location=shown,
            error_type="redirect",
        )
    if plan is not None and (plan.conditions or plan.degraded_when):
        result = judge_answer(plan, resp, ms)
    else:
        result = classify_response(status, resp.body, ms, resp.content_type)
    if resp.cert_not_after is not None:
        result.details["cert_not_after"] = resp.cert_not_after
    if resp.truncated:
        result.details["body_truncated"] = True
    if hops:
        result.details["redirects"] = hops
    return result


def judge_answer(plan: CheckPlan, resp: FastResponse, ms: float) -> HealthCheckResult:
    """An answer judged by ``plan``'s conditions; its body's ``version`` recorded as the
    default reading records it."""
    not_after = resp.cert_not_after
    obs = Observation(
        status=resp.status,
        body=resp.body,
        response_time_ms=ms,
        headers=resp.headers or {},
        cert_expiry_s=None if not_after is None else not_after - time.time(),
    )
    if not plan.conditions:  # degraded_when alone: health is the default reading's
        default = classify_response(resp.status, resp.body, ms, resp.content_type)
        return judge(plan, obs, None, default)
    details: dict[str, Any] = {"http_status": resp.status}
    data = obs.json_or_none()  # not JSON: conditions on the body say so themselves
    if isinstance(data, dict) and data.get("version") is not None:
        version = read_version(data["version"])
        if version is not None:
            details["version"] = version
    return judge(plan, obs, details)


def describe(exc: BaseException, timeout: float, host: str) -> tuple[str, str]:
    """A message naming the cause of a failed check, and a short error kind."""
    if isinstance(exc, PoolTimeoutError):
        return f"timeout after {_seconds(timeout)}s ({exc.reason})", "timeout"
    if isinstance(exc, TimeoutError):
        return f"timeout after {_seconds(timeout)}s", "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc}", "tls"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}", "tls"
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed for {host}: {exc.strerror or exc}", "dns"
    if isinstance(exc, ClientClosedError):
        return "checker closed during the check", "closed"
    if isinstance(exc, ConnectionClosedError):
        return "connection closed by server without a response", "connection_closed"
    if isinstance(exc, InvalidResponseError):
        return f"invalid HTTP response: {exc}", "invalid_response"
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError)
        and (exc.errno == errno.ECONNREFUSED or "Connection refused" in str(exc))
    ):
        return "connection refused", "connection_refused"
    if isinstance(exc, OSError):
        return f"connection error: {exc.strerror or exc}", "connection_error"
    return f"check failed: {type(exc).__name__}: {exc}", "error"


def failed(
    exc: BaseException,
    timeout: float,
    host: str,
    start: float,
    hops: int,
    plan: CheckPlan | None = None,
) -> HealthCheckResult:
    """The result of a check to ``host`` that got ``exc`` instead of an answer (with
    ``plan``'s conditions, judged as not connected: see :func:`~.plan.transport_failed`)."""
    message, kind = describe(exc, timeout, host)
    details: dict[str, Any] = {"error_type": kind}
    if hops:
        details["redirects"] = hops
    if isinstance(exc, PoolTimeoutError) and not exc.per_origin:
        # Every connection of the checker was busy: its own limit, not the target, failed.
        details["checker_saturated"] = True
    if plan is not None and plan.conditions and not details.get("checker_saturated"):
        return transport_failed(plan, redact_text(message), ms_since(start), details)
    return failure(redact_text(message), ms_since(start), **details)


def settled(task: asyncio.Task[HealthCheckResult], start: float) -> HealthCheckResult:
    """A finished check task's result; cancelled or raising, a failed result."""
    if task.cancelled():
        return failure("checker closed during the check", ms_since(start), error_type="closed")
    exc = task.exception()
    if exc is not None:
        return failure(f"check failed: {type(exc).__name__}", ms_since(start), error_type="error")
    return task.result()


def _seconds(value: float) -> str:
    """10 -> "10", 0.59987 -> "0.6" (a timeout clipped by wait_for_healthy), 150.4 -> "150"."""
    if value == int(value):
        return str(int(value))
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def ms_since(start: float) -> float:
    """Milliseconds since the monotonic ``start``."""
    return (time.monotonic() - start) * 1000.0
