"""The version a deployment reports in its health body, and whether it is the one expected.

The spec's health endpoint answers ``{"status": "healthy", "version": "1.0.0"}``. The
default check records that ``version`` with each result (``details["version"]``, read
with the status from the same memoised parse of a small body), the status shows the last
one reported (``version``), and so do the export and the API. A rollout can require new
instances to report the version being deployed: :func:`compare_version` on each gate
result says match, mismatch (both versions named) or unreported (no evidence: never a
pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.redact import redact_text

__all__ = ["MAX_VERSION_CHARS", "VersionReport", "compare_version", "read_version", "reported"]

#: A longer reported version is cut to this many characters (it is shown and stored).
MAX_VERSION_CHARS = 64


def read_version(value: Any) -> str | None:
    """A body's ``version`` value as recorded: a string or a number, stripped, printable
    only, at most :data:`MAX_VERSION_CHARS`, redacted; anything else (or empty) is None.

    >>> read_version("1.0.0"), read_version(2), read_version(True), read_version(" ")
    ('1.0.0', '2', None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value).strip()[: MAX_VERSION_CHARS * 4]
    text = "".join(c if c.isprintable() else "?" for c in text)[:MAX_VERSION_CHARS]
    return redact_text(text) if text else None


def reported(result: HealthCheckResult) -> str | None:
    """The version ``result``'s answer reported, or None (no answer, or none in its body)."""
    value = result.details.get("version") if result.details else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class VersionReport:
    """One result's version against the one expected."""

    expected: str
    reported: str | None

    @property
    def matches(self) -> bool | None:
        """True or False when a version was reported; None when none was (inconclusive)."""
        return None if self.reported is None else self.reported == self.expected

    def message(self) -> str:
        if self.reported is None:
            return f"reports no version (expected {self.expected})"
        if self.reported == self.expected:
            return f"reports version {self.reported}"
        return f"reports version {self.reported}, expected {self.expected}"


def compare_version(result: HealthCheckResult, expected: str) -> VersionReport:
    """Whether ``result`` reported ``expected`` (compared as recorded: see :func:`read_version`).

    >>> r = HealthCheckResult(True, "healthy", 1.0, details={"version": "1.0.0"})
    >>> compare_version(r, "1.1.0").message()
    'reports version 1.0.0, expected 1.1.0'
    """
    return VersionReport(read_version(expected) or expected, reported(result))
