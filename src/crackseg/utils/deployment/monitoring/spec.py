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

import math
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator

from crackseg.utils.deployment.errors import ConfigError, require_positive
from crackseg.utils.deployment.redact import is_secret_key, redact_url

__all__ = [
    "DEPLOYMENT_ID_PATTERN",
    "MAX_GROUP_LENGTH",
    "MAX_INTERVAL",
    "MAX_THRESHOLD_COUNT",
    "MAX_TIMEOUT",
    "MAX_URL_LENGTH",
    "MIN_INTERVAL",
    "AlertThresholds",
    "DeploymentSpec",
    "Interval",
    "Timeout",
    "check_http_url",
    "error_message",
    "first_problem",
    "loc_path",
    "require_interval",
    "require_timeout",
    "shown_value",
]

#: Shortest interval accepted anywhere (seconds).
MIN_INTERVAL = 0.1
#: Longest check interval (seconds): one day.
MAX_INTERVAL = 86_400.0
#: Longest check timeout (seconds): one hour.
MAX_TIMEOUT = 3_600.0
MAX_URL_LENGTH = 2048
MAX_THRESHOLD_COUNT = 1000
#: Longest ``group`` name (characters).
MAX_GROUP_LENGTH = 64
DEPLOYMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@#-]{0,127}$"
_SHOWN_MAX = 60

Interval = Annotated[float, Strict(), Field(ge=MIN_INTERVAL, le=MAX_INTERVAL, allow_inf_nan=False)]
Timeout = Annotated[float, Strict(), Field(gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)]
_Limit = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
_Count = Annotated[int, Strict(), Field(ge=1, le=MAX_THRESHOLD_COUNT)]


def require_interval(field: str, value: float, high: float = 366 * 86_400.0) -> None:
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
        Annotated[float, Strict(), Field(ge=MIN_INTERVAL, le=366 * 86_400.0, allow_inf_nan=False)]
        | None
    ) = Field(None, description="seconds between repeats of a firing alert")
    group: Annotated[str, Strict()] | None = Field(
        None,
        min_length=1,
        max_length=MAX_GROUP_LENGTH,
        description="heading the status page lists it under (e.g. 'Model team'); none: ungrouped",
    )
    public: Annotated[bool, Strict()] = Field(
        False,
        description="shown on the public status view /status and its badges without a token "
        "(name, status, uptime and heartbeat only)",
    )

    @field_validator("health_check_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return check_http_url(v)

    def __repr_args__(self) -> Any:
        return [
            (k, redact_url(v) if k == "health_check_url" else v) for k, v in super().__repr_args__()
        ]


def loc_path(loc: tuple[int | str, ...]) -> str:
    """``("deployments", 2, "timeout")`` as ``deployments[2].timeout``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("source",) and not part.startswith("function-"):
            out += f".{part}" if out else str(part)
    return out or "<root>"


def shown_value(value: Any, path: str) -> str:
    """``, got <value>`` for a message, cut when long; nothing for a secret."""
    if is_secret_key(path):
        return ""
    text = repr(value)
    if len(text) > _SHOWN_MAX:
        text = text[:_SHOWN_MAX] + "..."
    return f", got {text}"


_COMPARISONS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def error_message(err: Any, path: str) -> str:
    """One pydantic error (``ValidationError.errors()`` item) as what is expected."""
    kind, ctx, got = err["type"], err.get("ctx") or {}, shown_value(err.get("input"), path)
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    value = err.get("input")
    if kind == "finite_number" or (isinstance(value, float) and not math.isfinite(value)):
        return f"must be a finite number{got}"
    if kind in _COMPARISONS:
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {_COMPARISONS[kind]} {bound}{got}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number{got}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false{got}"
    if kind == "string_type":
        return f"must be a string{got}"
    if kind == "list_type":
        return f"must be a list{got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys{got}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected', '')}{got}"
    if kind == "string_pattern_mismatch":
        return (
            f"must be 1-128 letters, digits or . _ : @ - # (starting with a letter or digit){got}"
        )
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind in ("too_long", "string_too_long"):
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


def first_problem(exc: ValidationError, model: type[BaseModel] | None = None) -> tuple[str, str]:
    """The first problem of ``exc`` (``model``'s, by default :class:`DeploymentSpec`'s) as
    ``(field, what is expected)``."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if isinstance(p, int | str))
    path = loc_path(loc)
    if err["type"] == "extra_forbidden":
        if model is None:
            model = AlertThresholds if loc[:1] == ("thresholds",) else DeploymentSpec
        return path, f"unknown key; expected one of: {', '.join(model.model_fields)}"
    return path, error_message(err, path)
