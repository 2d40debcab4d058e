"""A deployment's check, compiled once: what to send, how to judge it, and the one judgement.

:func:`build_plan` turns the check fields of a
:class:`~crackseg.utils.deployment.monitoring.spec.DeploymentSpec` into a :class:`CheckPlan`:
a preset expanded, the body encoded, conditions compiled. :func:`judge` is the one place an answer becomes healthy,
degraded or unhealthy when conditions are given: every condition must hold for healthy
(the first that fails is named with its value in ``error_message``), and then any
``degraded_when`` that holds reads degraded. Without conditions the checkers keep their
default judgement (2xx, and a JSON ``status`` of degraded/unhealthy) on its fast path.

Headers and bodies may hold secrets: the values of headers whose name is secret
(``Authorization``, ``X-Api-Key``: :func:`~crackseg.utils.deployment.redact.is_secret_key`),
of JSON body keys so named, and every value the configuration file substituted for a
``${VAR}``. :attr:`CheckPlan.secrets` holds them, and every text a check produces passes
through :func:`~crackseg.utils.deployment.redact.redact_text` with them.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

from crackseg.utils.deployment.models import HealthCheckResult, HealthStatus
from crackseg.utils.deployment.monitoring.checks.conditions import (
    Condition,
    ConditionError,
    Observation,
    compile_conditions,
)
from crackseg.utils.deployment.monitoring.checks.presets import expand
from crackseg.utils.deployment.monitoring.checks.tls import TlsOptions
from crackseg.utils.deployment.redact import is_secret_key, redact_text

__all__ = [
    "GRPC_MISSING",
    "MAX_BODY_LENGTH",
    "MAX_HEADERS",
    "MAX_HEADER_LENGTH",
    "METHODS",
    "CheckPlan",
    "CheckType",
    "Method",
    "PlanChecker",
    "PlanHttpChecker",
    "build_plan",
    "check_headers",
    "grpc_available",
    "judge",
    "judge_connected",
    "transport_failed",
    "unhealthy",
]

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH"]
METHODS: tuple[Method, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH")
CheckType = Literal["http", "grpc", "tcp"]
GRPC_MISSING = "gRPC checks need grpcio: pip install 'crackseg-deploy[grpc]'"
#: Most request headers on one deployment.
MAX_HEADERS = 32
#: Longest header name plus value (characters).
MAX_HEADER_LENGTH = 4096
#: Largest request body (bytes once encoded).
MAX_BODY_LENGTH = 64 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_DEFAULT_JUDGEMENT = {
    "http": "(default) 2xx, unless a JSON status says degraded or unhealthy",
    "grpc": "(default) grpc.health.v1 answers SERVING",
    "tcp": "(default) connected within the timeout",
}
#: Placeholders a check without an HTTP answer can read.
_TRANSPORT_ONLY = frozenset({"CONNECTED", "RESPONSE_TIME", "CERTIFICATE_EXPIRATION"})


@dataclass(frozen=True, slots=True)
class CheckPlan:
    """One deployment's compiled check. ``default`` is true for today's plain GET (no
    conditions, headers, body or TLS options): the checkers' untouched fast path."""

    type: CheckType
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    content_type: str | None = None
    conditions: tuple[Condition, ...] = ()
    degraded_when: tuple[Condition, ...] = ()
    tls: TlsOptions | None = None
    service: str = ""
    preset: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def default(self) -> bool:
        return (
            self.type == "http"
            and self.method == "GET"
            and not self.headers
            and self.body is None
            and not self.conditions
            and not self.degraded_when
            and self.tls is None
        )

    def explain(self) -> dict[str, Any]:
        """The expansion as plain data (``crackseg-monitor validate --explain``), secrets masked."""
        out: dict[str, Any] = {"type": self.type, "url": redact_text(self.url, self.secrets)}
        if self.type == "http":
            out["method"] = self.method
        if self.type == "grpc":
            out["service"] = self.service
        if self.preset:
            out["preset"] = self.preset
        if self.headers:
            out["headers"] = {k: redact_text(v, self.secrets) for k, v in self.headers}
        if self.body is not None:
            out["body"] = redact_text(self.body.decode("utf-8", "replace"), self.secrets)
        out["conditions"] = [c.text for c in self.conditions] or [_DEFAULT_JUDGEMENT[self.type]]
        if self.degraded_when:
            out["degraded_when"] = [c.text for c in self.degraded_when]
        if self.tls is not None:
            out["tls"] = self.tls.model_dump(exclude_none=True)
        return out


def check_headers(headers: Mapping[str, str]) -> None:
    """ValueError naming the header unless ``headers`` is within the limits and one line each."""
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers, got {len(headers)}")
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"headers: name {name[:40]!r} must be a token (letters, digits, -)")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"headers.{name}: must be one line (no CR, LF or NUL)")
        if len(name) + len(value) > MAX_HEADER_LENGTH:
            raise ValueError(f"headers.{name}: longer than {MAX_HEADER_LENGTH} characters")


def build_plan(
    *,
    url: str,
    type: CheckType = "http",
    method: Method = "GET",
    headers: Mapping[str, str] | None = None,
    body: str | dict[str, Any] | list[Any] | None = None,
    conditions: Sequence[str] = (),
    degraded_when: Sequence[str] = (),
    tls: TlsOptions | None = None,
    service: str | None = None,
    preset: str | None = None,
    model: str | None = None,
    secrets: Sequence[str] = (),
) -> CheckPlan:
    """Compile the check fields; ValueError (a ConditionError for a condition) names the
    field and the fix. ``secrets``: values the configuration file substituted for
    ``${VAR}`` (those found in the headers or body are kept as the plan's secrets)."""
    if preset is not None:
        x = expand(preset, url, model)
        url, type = x.url, x.type
        conditions = [*x.conditions, *conditions]
        if x.type == "grpc":
            service = x.service if service is None else service
    elif model is not None:
        raise ValueError("model: applies with a preset only")
    sent = tuple((headers or {}).items())
    check_headers(dict(sent))
    payload, content_type = _encode_body(body)
    found = [v for k, v in sent if is_secret_key(k)] + _secret_values(body)
    text = "\n".join(v for _, v in sent) + (payload or b"").decode("utf-8", "replace")
    found += [s for s in secrets if s and s in text]
    if payload is not None and method in ("GET", "HEAD"):
        raise ValueError(f"body: a {method} request sends no body; use POST, PUT or PATCH")
    if type != "http" and (sent or payload is not None or method != "GET"):
        raise ValueError(f"method, headers and body apply to http checks, not {type}")
    if type == "grpc" and not grpc_available():
        raise ValueError(f"type: {GRPC_MISSING}")
    if service is not None and type != "grpc":
        raise ValueError("service: applies to type grpc only")
    compiled = compile_conditions(list(conditions))
    degraded = compile_conditions(list(degraded_when))
    tls_used = url.startswith(("https:", "grpcs:")) or (type == "tcp" and tls is not None)
    for c in (*compiled, *degraded):
        if type != "http" and not c.placeholders <= _TRANSPORT_ONLY:
            raise ConditionError(
                c.text, 1, f"a {type} check has no HTTP answer: use [CONNECTED], "
                "[RESPONSE_TIME] or [CERTIFICATE_EXPIRATION]"
            )  # fmt: skip
        if "CERTIFICATE_EXPIRATION" in c.placeholders and not tls_used:
            raise ConditionError(c.text, 1, "no TLS on this check: use an https:// URL")
    if tls is not None and not tls_used:
        raise ValueError("tls: applies to https://, grpcs:// and tcp checks")
    if tls is not None and type == "grpc" and not tls.verify:
        raise ValueError("tls.verify: gRPC checks always verify; give ca_file for a private CA")
    return CheckPlan(
        type=type,
        url=url,
        method=method,
        headers=sent,
        body=payload,
        content_type=content_type,
        conditions=compiled,
        degraded_when=degraded,
        tls=tls,
        service=service or "",
        preset=preset,
        secrets=tuple(dict.fromkeys(v for v in found if v)),
    )


def _encode_body(body: Any) -> tuple[bytes | None, str | None]:
    if body is None:
        return None, None
    if isinstance(body, str):
        data, content_type = body.encode(), "text/plain; charset=utf-8"
    else:
        data, content_type = orjson.dumps(body), "application/json"
    if len(data) > MAX_BODY_LENGTH:
        raise ValueError(f"body: at most {MAX_BODY_LENGTH} bytes, got {len(data)}")
    return data, content_type


def _secret_values(value: Any, key: str = "") -> list[str]:
    """Strings of a JSON body held under a secret-named key (``{"api_key": "..."}``)."""
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in _secret_values(v, str(k))]
    if isinstance(value, list):
        return [s for v in value for s in _secret_values(v, key)]
    if isinstance(value, str) and key and is_secret_key(key):
        return [value]
    return []


def judge(
    plan: CheckPlan,
    obs: Observation,
    details: dict[str, Any] | None = None,
    default: HealthCheckResult | None = None,
) -> HealthCheckResult:
    """Healthy when every condition holds; degraded when, besides, a ``degraded_when``
    holds; otherwise unhealthy naming the first condition that failed and its value.
    Without conditions, ``default`` (the checker's own reading of the answer) decides
    health, and ``degraded_when`` may only turn its healthy into degraded."""
    details = {} if details is None else details
    if not plan.conditions and default is not None:
        if not default.success:
            return default
        details = default.details
    for condition in plan.conditions:
        failed = condition.check(obs)
        if failed is not None:
            details["failed_condition"] = condition.text
            return unhealthy(plan, str(failed), obs.response_time_ms, details)
    for condition in plan.degraded_when:
        if condition.check(obs) is None:
            details["degraded_condition"] = condition.text
            return HealthCheckResult(
                False,
                HealthStatus.DEGRADED.value,
                obs.response_time_ms,
                error_message=f"degraded: {condition.text}",
                details=details,
            )
    return HealthCheckResult(
        True, HealthStatus.HEALTHY.value, obs.response_time_ms, details=details
    )


def judge_connected(
    plan: CheckPlan, response_time_ms: float, details: dict[str, Any], cert_expiry_s: float | None
) -> HealthCheckResult:
    """A connection was made (and, for gRPC, answered SERVING): healthy, unless the plan's
    conditions judge otherwise on "connected" with ``cert_expiry_s`` (None: no TLS)."""
    if plan.conditions or plan.degraded_when:
        obs = Observation(
            response_time_ms=response_time_ms, connected=True, cert_expiry_s=cert_expiry_s
        )
        return judge(plan, obs, details)
    return HealthCheckResult(True, HealthStatus.HEALTHY.value, response_time_ms, details=details)


def transport_failed(
    plan: CheckPlan, message: str, response_time_ms: float, details: dict[str, Any]
) -> HealthCheckResult:
    """No answer came (refused, timeout, TLS...): unhealthy with ``message``, unless the
    deployment's conditions hold on "not connected" (``[CONNECTED] == false``: a port that
    must stay closed), as Gatus evaluates them."""
    if plan.conditions:
        obs = Observation(status=0, response_time_ms=response_time_ms, connected=False)
        if all(c.check(obs) is None for c in plan.conditions):
            return judge(plan, obs, details)
    return unhealthy(plan, message, response_time_ms, details)


def unhealthy(
    plan: CheckPlan, message: str, response_time_ms: float, details: dict[str, Any]
) -> HealthCheckResult:
    """An unhealthy result saying ``message`` with the plan's secrets redacted from it."""
    return HealthCheckResult(
        False,
        HealthStatus.UNHEALTHY.value,
        response_time_ms,
        error_message=redact_text(message, plan.secrets),
        details=details,
    )


@runtime_checkable
class PlanHttpChecker(Protocol):
    """A checker that can carry a deployment's HTTP plan (the default checker does)."""

    async def check_plan_async(self, plan: CheckPlan, timeout: float = 10) -> HealthCheckResult:
        """Send ``plan``'s request and judge its answer within ``timeout`` seconds."""
        ...


@runtime_checkable
class PlanChecker(Protocol):
    """A check type other than the HTTP fast path (one file each: tcp, grpc): runs one
    deployment's :class:`CheckPlan` on the running loop within ``timeout`` seconds, never
    raising for a failed check."""

    async def check(self, plan: CheckPlan, timeout: float) -> HealthCheckResult: ...

    async def aclose(self) -> None:
        """Release what the running loop holds (connections, channels)."""

    def release(self, plan: CheckPlan) -> None:
        """No deployment checks ``plan``'s target any more: let go of what is kept for it
        (called from any thread)."""


def grpc_available() -> bool:
    """True when the optional ``grpc`` extra (grpcio, grpcio-health-checking) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("grpc", "grpc_health"))
