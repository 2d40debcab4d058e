"""One exception tree for the package.

CrackSegDeploymentError
├── ConfigError            bad input: names each field and what to do (also a ValueError)
├── ProcessNotFoundError   no running process matches a name (also a LookupError)
├── NotifierError          an alert channel failed; ``permanent`` says whether retrying helps
├── StoreError             the history store failed
└── DeploymentError        a rollout step failed
    ├── GateFailedError    a health gate judged the new version bad
    └── RouterError        the traffic router refused a change
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

__all__ = [
    "ConfigError",
    "ConfigProblems",
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
    """Invalid configuration or argument; the message names the field and the fix.

    ``problems`` holds every problem found, each ``(field, what to do)``; ``field`` and
    ``problem`` are the first's. ``str()`` gives one line per problem, ``field: problem``.

    >>> print(ConfigError("rate", "must be > 0", more=[("path", "must start with '/'")]))
    rate: must be > 0
    path: must start with '/'
    """

    def __init__(self, field: str, problem: str, *, more: Iterable[tuple[str, str]] = ()) -> None:
        self.field = field
        self.problem = problem
        self.problems: list[tuple[str, str]] = [(field, problem), *more]
        super().__init__("\n".join(f"{where}: {what}" for where, what in self.problems))

    @classmethod
    def of(cls, problems: Iterable[tuple[str, str]]) -> ConfigError:
        """One error listing ``problems`` (at least one)."""
        first, *more = problems
        return cls(*first, more=more)


class ConfigProblems:
    """Gathers every problem of a value's checks, so that one error lists them all.

    Each check runs in :meth:`check`; a :class:`ConfigError` it raises is kept (every
    problem of it, its fields prefixed), and the checks after it still run.
    :meth:`raise_any` then raises one :class:`ConfigError` with all of them.

    >>> found = ConfigProblems()
    >>> with found.check():
    ...     require_positive("rate", -1)
    >>> with found.check("load."):
    ...     require_positive("timeout", 0)
    >>> found.problems
    [('rate', 'must be > 0, got -1'), ('load.timeout', 'must be > 0, got 0')]
    """

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def __bool__(self) -> bool:
        return bool(self.problems)

    def add(self, field: str, problem: str) -> None:
        self.problems.append((field, problem))

    @contextlib.contextmanager
    def check(self, prefix: str = "") -> Iterator[None]:
        """Run the block; keep the problems of a :class:`ConfigError` it raises, each field
        prefixed with ``prefix``. A check that depends on an earlier one shares its block."""
        try:
            yield
        except ConfigError as exc:
            self.problems += [(prefix + where, what) for where, what in exc.problems]

    def positive(self, field: str, value: float, *, allow_zero: bool = False) -> bool:
        """:func:`require_positive`, its problem kept; whether ``value`` passed."""
        before = len(self.problems)
        with self.check():
            require_positive(field, value, allow_zero=allow_zero)
        return len(self.problems) == before

    def raise_any(self) -> None:
        """Raise one :class:`ConfigError` listing every problem kept, if any."""
        if self.problems:
            raise ConfigError.of(self.problems)


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
