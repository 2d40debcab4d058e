"""The monitor's own settings: one model, one set of defaults and limits.

``DeploymentHealthMonitor``'s constructor takes its defaults from :data:`DEFAULTS` and
checks its arguments with :func:`checked_settings`; the configuration file's ``monitor``
section *is* :class:`MonitorSettings`. So what ``crackseg-monitor validate`` accepts, the
monitor accepts, and a limit is changed in one place.

>>> MonitorSettings.model_validate({"repeat_interval": "10m"}).repeat_interval
600.0
>>> checked_settings(failure_threshold=0)
Traceback (most recent call last):
...
crackseg.utils.deployment.errors.ConfigError: failure_threshold: must be >= 1, got 0
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from crackseg.utils.deployment.durations import Duration
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.monitoring.rules import RULES
from crackseg.utils.deployment.monitoring.spec import (
    MAX_REPEAT_INTERVAL,
    MAX_THRESHOLD_COUNT,
    MAX_TIMEOUT,
    MIN_INTERVAL,
)
from crackseg.utils.deployment.validation import problems

__all__ = ["DEFAULTS", "MAX_HISTORY", "MonitorSettings", "checked_settings"]

#: Most results a deployment's in-memory history holds.
MAX_HISTORY = 10_000_000

_Count = Annotated[int, Field(ge=1, le=MAX_THRESHOLD_COUNT, strict=True)]
_Interval = Annotated[Duration, Field(ge=MIN_INTERVAL, le=MAX_REPEAT_INTERVAL)]
_Timeout = Annotated[Duration, Field(gt=0, le=MAX_TIMEOUT)]


def _known_rule(name: str) -> str:
    if name not in RULES:
        raise ValueError(f"unknown alert type {name!r}; use one of {', '.join(sorted(RULES))}")
    return name


_Rule = Annotated[str, AfterValidator(_known_rule)]


class MonitorSettings(BaseModel):
    """Defaults of the monitor itself (``DeploymentHealthMonitor`` constructor arguments);
    a deployment's own ``failure_threshold``, ``repeat_interval``... override them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Failed checks in a row before an alert fires (1-1000).
    failure_threshold: _Count = 3
    #: Good checks in a row before it resolves (1-1000).
    success_threshold: _Count = 2
    #: Time between repeats of a firing alert (0.1 s - 366 days).
    repeat_interval: _Interval = 3600.0
    #: Window of the error-rate rule (0.1 s - 366 days).
    error_rate_window: _Interval = 300.0
    #: A check's timeout when its deployment gives none (> 0, <= 1 h).
    default_timeout: _Timeout = 10.0
    #: Results kept per deployment by the in-memory history.
    max_history: Annotated[int, Field(ge=1, le=MAX_HISTORY, strict=True)] = 1000
    #: How often the machine's own CPU and memory are sampled.
    system_metrics_interval: _Interval = 5.0
    #: Per alert type, e.g. ``{high_cpu_usage: 10m}``: overrides ``repeat_interval``.
    repeat_intervals: dict[_Rule, _Interval] = {}
    #: A deployment changing state more than this often in ``flap_window`` alerts once as
    #: flapping; ``null`` turns flap detection off.
    flap_max_changes: Annotated[int, Field(ge=1, le=MAX_THRESHOLD_COUNT, strict=True)] | None = 6
    flap_window: _Interval = 600.0


#: The defaults, for signatures.
DEFAULTS = MonitorSettings()


def checked_settings(**kwargs: Any) -> MonitorSettings:
    """``kwargs`` as :class:`MonitorSettings`; :class:`ConfigError` naming the first bad one."""
    try:
        return MonitorSettings.model_validate(kwargs)
    except ValidationError as exc:
        raise ConfigError(*problems(exc, MonitorSettings)[0]) from None
