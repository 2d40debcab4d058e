"""The one model of a monitored deployment's settings and limits.

:class:`DeploymentSpec` is what ``DeploymentHealthMonitor.add_deployment_monitoring``
checks its arguments against, what a YAML ``deployments[i]`` entry is (``service.config``'s
``DeploymentSettings`` only renames ``deployment_id``/``health_check_url`` to ``id``/``url``
and reads durations such as ``"30s"``), and the body of ``POST /api/v1/deployments``; the
OpenAPI description is generated from it. One set of limits, one wording of each problem:

- ``check_interval`` and every other interval: at least :data:`MIN_INTERVAL` (0.1 s: enough
  to stop a busy loop, short enough for fast tests), at most :data:`MAX_INTERVAL` (a day);
- ``timeout``: above 0, at most :data:`MAX_TIMEOUT` (an hour);
- every number finite (NaN and infinity refused); the URL http(s) with a host.

>>> DeploymentSpec(deployment_id="api", health_check_url="http://127.0.0.1:8080/health").check_interval
30.0
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

from crackseg.utils.deployment.errors import ConfigError, require_positive
from crackseg.utils.deployment.redact import redact_url

__all__ = [
    "DEPLOYMENT_ID_PATTERN",
    "MAX_INTERVAL",
    "MAX_REPEAT_INTERVAL",
    "MAX_THRESHOLD_COUNT",
    "MAX_TIMEOUT",
    "MAX_URL_LENGTH",
    "MIN_INTERVAL",
    "AlertThresholds",
    "DeploymentSpec",
    "Interval",
    "Timeout",
    "check_http_url",
    "require_interval",
    "require_timeout",
]

#: Shortest interval accepted anywhere (seconds).
MIN_INTERVAL = 0.1
#: Longest check interval (seconds): one day.
MAX_INTERVAL = 86_400.0
#: Longest check timeout (seconds): one hour.
MAX_TIMEOUT = 3_600.0
#: Longest repeat interval, and longest window of the monitor's own settings: 366 days.
MAX_REPEAT_INTERVAL = 366 * 86_400.0
MAX_URL_LENGTH = 2048
MAX_THRESHOLD_COUNT = 1000
DEPLOYMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@#-]{0,127}$"
_SHOWN_MAX = 60

Interval = Annotated[float, Strict(), Field(ge=MIN_INTERVAL, le=MAX_INTERVAL, allow_inf_nan=False)]
Timeout = Annotated[float, Strict(), Field(gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)]
_Limit = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
_Count = Annotated[int, Strict(), Field(ge=1, le=MAX_THRESHOLD_COUNT)]


def require_interval(field: str, value: float, high: float = MAX_REPEAT_INTERVAL) -> None:
    """ConfigError unless ``value`` is a finite interval of at least :data:`MIN_INTERVAL`."""
    require_positive(field, value)
    if value < MIN_INTERVAL:
        raise ConfigError(field, f"must be >= {MIN_INTERVAL}, got {value}")
    if value > high:
        raise ConfigError(field, f"must be <= {high:g}, got {value}")


def require_timeout(field: str, value: float) -> None:
    """ConfigError unless ``value`` is a finite timeout above 0 and at most an hour."""
    require_positive(field, value)
    if value > MAX_TIMEOUT:
        raise ConfigError(field, f"must be <= {MAX_TIMEOUT:g}, got {value}")


def check_http_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host and a valid port; ValueError otherwise."""
    shown = redact_url(value)
    if len(shown) > _SHOWN_MAX:
        shown = shown[:_SHOWN_MAX] + "..."
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError(f"must be an http:// or https:// URL with a host, got {shown!r}")
    return value


class AlertThresholds(BaseModel):
    """Alert limits; a missing one keeps the monitor's default (or, per deployment, the global)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    response_time_ms: _Limit | None = None
    cpu_usage_percent: _Limit | None = None
    memory_usage_mb: _Limit | None = None
    error_rate_percent: _Limit | None = None

    def as_dict(self) -> dict[str, float]:
        """Only the limits that were set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class DeploymentSpec(BaseModel):
    """A monitored deployment: the arguments of ``add_deployment_monitoring`` (without
    ``metadata``). ``None`` means the monitor's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment_id: Annotated[str, Strict()] = Field(
        pattern=DEPLOYMENT_ID_PATTERN, description="1-128 letters, digits or . _ : @ - #"
    )
    health_check_url: Annotated[str, Strict()] = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="http:// or https:// URL with a host; credentials in it are masked",
        json_schema_extra={"format": "uri"},
    )
    process_name: Annotated[str, Strict()] | None = Field(
        None, min_length=1, max_length=256, description="process whose CPU and memory to judge"
    )
    check_interval: Interval = Field(30.0, description="seconds between checks (0.1 s - 1 day)")
    timeout: Timeout | None = Field(
        None, description="seconds a check may take (> 0, <= 1 h); null: the monitor's default"
    )
    thresholds: AlertThresholds | None = Field(
        None, description="this deployment's alert limits over the global ones"
    )
    failure_threshold: _Count | None = Field(None, description="failed checks in a row to alert")
    success_threshold: _Count | None = Field(None, description="good checks in a row to resolve")
    repeat_interval: (
        Annotated[
            float, Strict(), Field(ge=MIN_INTERVAL, le=MAX_REPEAT_INTERVAL, allow_inf_nan=False)
        ]
        | None
    ) = Field(None, description="seconds between repeats of a firing alert")

    @field_validator("health_check_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return check_http_url(v)

    def __repr_args__(self) -> Any:
        return [
            (k, redact_url(v) if k == "health_check_url" else v) for k, v in super().__repr_args__()
        ]
