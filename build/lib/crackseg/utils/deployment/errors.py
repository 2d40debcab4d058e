"""One exception tree for the package.

CrackSegDeploymentError
├── ConfigError            bad input: names the field and what to do (also a ValueError)
├── ProcessNotFoundError   no running process matches a name (also a LookupError)
├── NotifierError          an alert channel failed; ``permanent`` says whether retrying helps
├── StoreError             the history store failed
└── DeploymentError        a rollout step failed
    ├── GateFailedError    a health gate judged the new version bad
    └── RouterError        the traffic router refused a change
"""

from __future__ import annotations

import math

__all__ = [
    "ConfigError",
    "CrackSegDeploymentError",
    "DeploymentError",
    "GateFailedError",
    "NotifierError",
    "ProcessNotFoundError",
    "RouterError",
    "StoreError",
    "require_positive",
]


class CrackSegDeploymentError(Exception):
    """Base of every error raised by this package."""


class ConfigError(CrackSegDeploymentError, ValueError):
    """Invalid configuration or argument; the message names the field and the fix."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class ProcessNotFoundError(CrackSegDeploymentError, LookupError):
    """No running process matches the requested name."""

    def __init__(self, process_name: str) -> None:
        self.process_name = process_name
        super().__init__(f"process {process_name!r} is not running (no process matches that name)")


class NotifierError(CrackSegDeploymentError):
    """An alert channel failed. ``permanent`` is True when a retry cannot succeed (e.g. HTTP 4xx)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(message)


class StoreError(CrackSegDeploymentError):
    """The history store could not read or write."""


class DeploymentError(CrackSegDeploymentError):
    """A deployment step failed."""


class GateFailedError(DeploymentError):
    """A health gate judged the new version bad."""


class RouterError(DeploymentError):
    """The traffic router could not apply a change."""


def require_positive(field: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ConfigError(field, f"must be a finite number, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(field, f"must be {'>=' if allow_zero else '>'} 0, got {value}")
