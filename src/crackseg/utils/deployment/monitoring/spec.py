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

from collections.abc import Mapping
from typing import Annotated, Any, TypedDict
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from crackseg.utils.deployment.errors import ConfigError, require_positive
from crackseg.utils.deployment.monitoring.checks.conditions import (
    MAX_CONDITION_LENGTH,
    MAX_CONDITIONS,
    ConditionError,
)
from crackseg.utils.deployment.monitoring.checks.plan import (
    MAX_HEADERS,
    CheckPlan,
    CheckType,
    Method,
    build_plan,
)
from crackseg.utils.deployment.monitoring.checks.presets import MODEL_PATTERN, PresetName
from crackseg.utils.deployment.monitoring.checks.tls import TlsOptions
from crackseg.utils.deployment.redact import MASK, redact_text, redact_url
from crackseg.utils.deployment.validation import problems

__all__ = [
    "DEPLOYMENT_ID_PATTERN",
    "MAX_GROUP_LENGTH",
    "MAX_INTERVAL",
    "MAX_REPEAT_INTERVAL",
    "MAX_THRESHOLD_COUNT",
    "MAX_TIMEOUT",
    "MAX_URL_LENGTH",
    "MIN_INTERVAL",
    "AlertThresholds",
    "CheckFields",
    "DeploymentSpec",
    "Interval",
    "Timeout",
    "check_http_url",
    "check_url",
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
#: Longest ``group`` name (characters).
MAX_GROUP_LENGTH = 64
DEPLOYMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@#-]{0,127}$"
_SHOWN_MAX = 60

Interval = Annotated[float, Strict(), Field(ge=MIN_INTERVAL, le=MAX_INTERVAL, allow_inf_nan=False)]
Timeout = Annotated[float, Strict(), Field(gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)]
_Limit = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
_Count = Annotated[int, Strict(), Field(ge=1, le=MAX_THRESHOLD_COUNT)]
_ConditionText = Annotated[str, Strict(), Field(min_length=1, max_length=MAX_CONDITION_LENGTH)]
_Conditions = Annotated[list[_ConditionText], Field(max_length=MAX_CONDITIONS)]
_SCHEMES = {"http": ("http", "https"), "grpc": ("grpc", "grpcs"), "tcp": ("tcp",)}


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
    return check_url(value, "http")


def check_url(value: str, check_type: str = "http") -> str:
    """``value`` if it is a URL a ``check_type`` check can use (http(s)://host, grpc(s)://
    host:port, tcp://host:port) with a valid port; ValueError otherwise."""
    shown = redact_url(value)
    if len(shown) > _SHOWN_MAX:
        shown = shown[:_SHOWN_MAX] + "..."
    schemes = _SCHEMES[check_type]
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in schemes
        or not parts.hostname
        or any(c.isspace() for c in value)
        or (check_type != "http" and (port is None or parts.path not in ("", "/")))
    ):
        if check_type == "http":
            raise ValueError(f"must be an http:// or https:// URL with a host, got {shown!r}")
        raise ValueError(
            f"a {check_type} check needs {' or '.join(s + '://' for s in schemes)}host:port "
            f"(no path), got {shown!r}"
        )
    return value


class AlertThresholds(BaseModel):
    """Alert limits; a missing one keeps the monitor's default (or, per deployment, the global)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    response_time_ms: _Limit | None = None
    cpu_usage_percent: _Limit | None = None
    memory_usage_mb: _Limit | None = None
    error_rate_percent: _Limit | None = None
    certificate_expiry_days: _Limit | None = None

    def as_dict(self) -> dict[str, float]:
        """Only the limits that were set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class CheckFields(TypedDict, total=False):
    """The check's keyword arguments of ``add_deployment_monitoring`` (see
    :class:`DeploymentSpec` and :mod:`.checks.plan`)."""

    type: CheckType
    method: Method
    headers: Mapping[str, str]
    body: str | dict[str, Any] | list[Any]
    conditions: list[str]
    degraded_when: list[str]
    tls: TlsOptions | Mapping[str, Any]
    service: str
    preset: PresetName
    model: str


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
    # The check itself: what to send and what healthy means (monitoring.checks.plan).
    type: CheckType | None = Field(
        None, description="http (default), grpc (grpc.health.v1) or tcp (connect)"
    )
    method: Method | None = Field(
        None, description="HTTP method (default GET): HEAD POST PUT PATCH"
    )
    headers: dict[str, Annotated[str, Strict()]] | None = Field(
        None, max_length=MAX_HEADERS, description="request headers (secret ones are masked)"
    )
    body: Annotated[str, Strict()] | dict[str, Any] | list[Any] | None = Field(
        None, description="request body: a string, or JSON sent as application/json"
    )
    conditions: _Conditions | None = Field(
        None, description="all must hold for healthy, e.g. '[STATUS] == 200' (Gatus syntax)"
    )
    degraded_when: _Conditions | None = Field(
        None, description="any holding (with the conditions) reads degraded"
    )
    tls: TlsOptions | None = Field(None, description="verify, ca_file, cert_file, key_file")
    service: Annotated[str, Strict()] | None = Field(
        None, max_length=256, description="gRPC service asked about ('' = the server)"
    )
    preset: PresetName | None = Field(
        None, description="kserve_v1, kserve_v2, triton or torchserve: URL and conditions"
    )
    model: Annotated[str, Strict()] | None = Field(
        None, pattern=MODEL_PATTERN, description="the model a preset asks about"
    )
    _plan: CheckPlan | None = PrivateAttr(None)

    @field_validator("health_check_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        schemes = ("http", "https", "grpc", "grpcs", "tcp")
        if urlsplit(v).scheme not in schemes:
            return check_http_url(v)  # the message of today's (and most) checks
        return v

    @model_validator(mode="after")
    def _compile_check(self, info: ValidationInfo) -> DeploymentSpec:
        """Parse the check once: URL for its type, preset, body, conditions. A validation
        context ``{"secrets": [...]}`` names values the file substituted for ``${VAR}``."""
        context = info.context if isinstance(info.context, dict) else {}
        url = self.health_check_url
        try:
            self._plan = build_plan(
                url=url,
                type=self.type or "http",
                method=self.method or "GET",
                headers=self.headers,
                body=self.body,
                conditions=self.conditions or (),
                degraded_when=self.degraded_when or (),
                tls=self.tls,
                service=self.service,
                preset=self.preset,
                model=self.model,
                secrets=context.get("secrets", ()),
            )
            check_url(self._plan.url, self._plan.type)
        except ConditionError as exc:
            which = "conditions"
            for name in ("conditions", "degraded_when"):
                texts = getattr(self, name) or []
                if exc.condition in texts:
                    which = f"{name}.{texts.index(exc.condition)}"
            raise self._invalid(which, str(exc), exc.condition) from None
        except ValueError as exc:
            text = str(exc)
            name, _, rest = text.partition(": ")
            if name.split(".")[0] in type(self).model_fields and rest:
                raise self._invalid(name, rest, getattr(self, name.split(".")[0])) from None
            raise self._invalid("health_check_url", text, url) from None
        return self

    def _invalid(self, field: str, problem: str, value: Any) -> ValidationError:
        """A ValidationError at ``field`` (the file's name for it) with ``problem``."""
        head, _, tail = field.partition(".")
        alias = type(self).model_fields[head].alias or head
        rest = [int(p) if p.isdigit() else p for p in tail.split(".")] if tail else []
        loc = (alias, *rest)
        error = PydanticCustomError("value_error", "{error}", {"error": problem})
        return ValidationError.from_exception_data(
            type(self).__name__, [InitErrorDetails(type=error, loc=loc, input=value)]
        )

    @field_serializer("headers", when_used="json")
    def _mask_headers(self, headers: dict[str, str] | None) -> dict[str, str] | None:
        if headers is None:
            return None
        secrets = self.check.secrets
        return {k: MASK if v in secrets else redact_text(v, secrets) for k, v in headers.items()}

    @field_serializer("body", when_used="json")
    def _mask_body(self, body: Any) -> Any:
        return _masked(body, self.check.secrets)

    @classmethod
    def checked(cls, **args: Any) -> DeploymentSpec:
        """The library's arguments as a spec, or ConfigError naming the first bad one."""
        for key in ("thresholds", "headers"):
            if isinstance(args.get(key), Mapping):
                args[key] = dict(args[key])
        try:
            return cls.model_validate(args)
        except ValidationError as exc:
            raise ConfigError(*problems(exc, DeploymentSpec)[0]) from None

    @property
    def check(self) -> CheckPlan:
        """The compiled check (made once, when this spec was validated)."""
        assert self._plan is not None
        return self._plan

    def __repr_args__(self) -> Any:
        return [
            (k, redact_url(v) if k == "health_check_url" else v) for k, v in super().__repr_args__()
        ]


def _masked(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return MASK if value in secrets else redact_text(value, secrets)
    if isinstance(value, dict):
        return {k: _masked(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets) for v in value]
    return value
