"""The values a condition reads and compares: what one check saw, and the operands.

Private to :mod:`.conditions`, which parses text into these and explains the language.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

_SHOWN_MAX = 80
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?$")
_MISSING: Final = object()


@dataclass(slots=True)
class Observation:
    """What one check saw. ``headers`` maps lower-case names to values; ``cert_expiry_s``
    is the time left (seconds) on the earliest certificate of the chain, None without TLS."""

    status: int = 0
    body: bytes = b""
    response_time_ms: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    cert_expiry_s: float | None = None
    connected: bool = True
    _json: Any = field(default=_MISSING, repr=False)

    def json(self) -> Any:
        """The body as JSON (parsed once); raises :class:`NotJson` when it is not JSON."""
        data = self._json
        if data is _MISSING:
            try:
                data = orjson.loads(self.body) if self.body else NotJson("the body is empty")
            except orjson.JSONDecodeError:
                data = NotJson("the body is not JSON")
            self._json = data
        if isinstance(data, NotJson):
            raise data
        return data

    def json_or_none(self) -> Any:
        """The body as JSON, or None when it is not JSON (or is JSON ``null``)."""
        try:
            return self.json()
        except NotJson:
            return None


class NotJson(Exception):
    pass


class Absent(Exception):
    """A placeholder with no value in this observation (the reason is the message)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """A condition that did not hold, and what was seen."""

    condition: str
    got: str

    def __str__(self) -> str:
        return f"{self.condition}: got {self.got}"


# --- operands ---------------------------------------------------------------------------


class Operand:
    __slots__ = ("text",)
    kind = "text"  # "number", "duration", "bool" or "text": what a literal beside it must be

    def __init__(self, text: str) -> None:
        self.text = text

    def value(self, obs: Observation) -> Any:
        raise NotImplementedError


class Constant(Operand):
    __slots__ = ("kind", "literal", "number")

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.kind = "text"
        literal = text
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            literal = text[1:-1]
        self.literal = literal
        self.number: float | None = float(literal) if _NUMBER.match(literal) else None

    def value(self, obs: Observation) -> Any:
        return self.literal


class Status(Operand):
    kind = "number"

    def value(self, obs: Observation) -> Any:
        return obs.status


class ResponseTime(Operand):
    kind = "number"

    def value(self, obs: Observation) -> Any:
        return obs.response_time_ms


class Connected(Operand):
    kind = "bool"

    def value(self, obs: Observation) -> Any:
        return obs.connected


class CertExpiry(Operand):
    kind = "duration"

    def value(self, obs: Observation) -> Any:
        return 0.0 if obs.cert_expiry_s is None else obs.cert_expiry_s


class Header(Operand):
    __slots__ = ("name",)

    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.name = name.lower()

    def value(self, obs: Observation) -> Any:
        value = obs.headers.get(self.name)
        if value is None:
            raise Absent(f"no {self.name} header")
        return value


class BodyPath(Operand):
    __slots__ = ("path",)

    def __init__(self, text: str, path: tuple[str | int, ...]) -> None:
        super().__init__(text)
        self.path = path

    def value(self, obs: Observation) -> Any:
        if not self.path:
            return obs.body.decode("utf-8", "replace")
        try:
            data = obs.json()
        except NotJson as exc:
            raise Absent(str(exc)) from None
        for step in self.path:
            if isinstance(step, int):
                if not isinstance(data, list):
                    raise Absent(f"no [{step}]: not an array")
                if step >= len(data):
                    raise Absent(f"no [{step}]: the array has {len(data)} items")
                data = data[step]
            else:
                if not isinstance(data, dict):
                    raise Absent(f"no .{step}: not an object")
                data = data.get(step, _MISSING)
                if data is _MISSING:
                    raise Absent(f"no key {step!r}")
        return data


class Length(Operand):
    __slots__ = ("inner",)
    kind = "number"

    def __init__(self, text: str, inner: BodyPath) -> None:
        super().__init__(text)
        self.inner = inner

    def value(self, obs: Observation) -> Any:
        data = self.inner.value(obs)
        if isinstance(data, list | str):
            return len(data)
        return len(orjson.dumps(data))


class Has(Operand):
    __slots__ = ("inner",)
    kind = "bool"

    def __init__(self, text: str, inner: BodyPath) -> None:
        super().__init__(text)
        self.inner = inner

    def value(self, obs: Observation) -> Any:
        try:
            self.inner.value(obs)
        except Absent:
            return False
        return True


class Pattern(Operand):
    """``pat(glob)`` or ``any(a, b)``: what the other side must match."""

    __slots__ = ("choices", "glob")

    def __init__(self, text: str, glob: str | None, choices: tuple[Constant, ...]) -> None:
        super().__init__(text)
        self.glob = glob
        self.choices = choices

    def matches(self, value: Any) -> bool:
        if self.glob is not None:
            return fnmatch.fnmatchcase(as_text(value), self.glob)
        return any(equal(value, choice) for choice in self.choices)


def placeholder_name(op: Operand) -> str | None:
    if isinstance(op, Length | Has):
        return "BODY"
    if isinstance(op, Constant | Pattern):
        return None
    return op.text[1 : op.text.index("]")]


def as_number(value: Any, operand: Operand) -> float | None:
    if isinstance(operand, Constant):
        return operand.number
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return None


def equal(value: Any, other: Operand | Any, other_value: Any = _MISSING) -> bool:
    """``value == other`` as Gatus compares: numbers as numbers, everything else as text."""
    if isinstance(other, Constant):
        if other.number is not None:
            n = as_number(value, Status(""))
            if n is not None:
                return n == other.number
        return as_text(value) == other.literal
    a, b = as_number(value, Status("")), as_number(other_value, Status(""))
    if a is not None and b is not None:
        return a == b
    return as_text(value) == as_text(other_value)


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def show(value: Any, operand: Operand) -> str:
    if isinstance(operand, CertExpiry):
        text = _duration_text(float(value))
    elif isinstance(operand, ResponseTime):
        text = f"{float(value):.0f}"
    elif (
        isinstance(value, str)
        and isinstance(operand, BodyPath | Header)
        and (isinstance(operand, Header) or operand.path)
    ):
        text = orjson.dumps(value).decode()  # quoted: "Healthy" and not Healthy
    else:
        text = as_text(value)
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + "..."


def _duration_text(seconds: float) -> str:
    if seconds <= 0:
        return "0s (expired or no certificate)" if seconds < 0 else "0s"
    days, rest = divmod(int(seconds), 86_400)
    hours = rest // 3600
    return f"{days}d{hours}h" if days else f"{hours}h{(rest % 3600) // 60}m"
