"""Durations as the configuration writes them: ``30``, ``"30s"``, ``"500ms"``, ``"5m"``.

One parser for the YAML file and every option model built from it (handler options
included), so a duration reads the same wherever it is written.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

__all__ = ["DURATION_PATTERN", "Duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
#: A duration written as a string (the JSON Schema of the configuration file uses it too).
DURATION_PATTERN = r"^\s*(\d*\.?\d+(?:[eE][-+]?\d+)?)\s*(ms|s|m|h|d|w)?\s*$"
_DURATION = re.compile(DURATION_PATTERN)


def parse_duration(value: Any) -> Any:
    """Seconds from ``30``, ``2.5``, ``"30s"``, ``"500ms"``, ``"5m"``, ``"2h"``, ``"7d"``.

    Values that are neither numbers nor such strings pass through for pydantic to reject.
    """
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(
                f"must be a duration such as 30, '30s', '500ms', '5m', '2h' or '7d', got {value!r}"
            )
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    return value


#: Seconds, written as a number or ``"30s"``/``"5m"``...; finite. The one duration type of
#: every model (bounds are added where it is used: ``Annotated[Duration, Field(gt=0)]``).
Duration = Annotated[
    float, BeforeValidator(parse_duration), Field(allow_inf_nan=False, strict=False)
]
