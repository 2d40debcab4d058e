"""Conditions: what "healthy" means for one deployment, in Gatus's language where it overlaps.

A condition is ``<operand> <comparator> <operand>``. Operands:

- placeholders: ``[STATUS]`` (HTTP status), ``[BODY]`` with an optional JSON path
  (``[BODY].a.b[0].c``), ``[RESPONSE_TIME]`` (milliseconds), ``[HEADERS].Name`` (a response
  header, name case-insensitive), ``[CERTIFICATE_EXPIRATION]`` (time left on the earliest
  certificate of the chain, compared with durations such as ``48h`` or ``7d``; 0 when the
  check used no TLS, as Gatus), ``[CONNECTED]`` (``true`` once a connection was made);
- functions: ``len(<[BODY] path>)`` (an array's length, else the length of the value as
  minified JSON text, a string counted without its quotes), ``has(<[BODY] path>)``
  (``true`` when the path exists), and, as one side of ``==``/``!=`` only, ``pat(glob)``
  and ``any(a, b, ...)``;
- anything else is a literal (``"quoted"`` or bare text, numbers, ``true``/``false``).

``==``/``!=`` compare numbers as numbers when both sides are numbers, otherwise as text
(a JSON ``true`` reads ``true``, so ``[BODY].ready == true`` works; text is compared
case-sensitively, as Gatus does). ``< <= > >=`` need numbers on both sides: a value that
is not one fails the condition, naming what was seen.

A condition is compiled once (:func:`compile_condition`); an unparsable condition, an
unknown placeholder, a path that cannot apply or a literal of the wrong kind raises
:class:`ConditionError` naming the condition and the 1-based position. Evaluating runs on
an :class:`Observation` (the bounded body the checker already read) and answers ``None``
(holds) or a :class:`Failed` whose text names the condition and the value seen:
``[BODY].ready == true: got false``.

>>> c = compile_condition("[BODY].ready == true")
>>> str(c.check(Observation(status=200, body=b'{"ready": false}')))
'[BODY].ready == true: got false'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from crackseg.utils.deployment.durations import parse_duration
from crackseg.utils.deployment.monitoring.checks._operands import (
    Absent,
    BodyPath,
    CertExpiry,
    Connected,
    Constant,
    Failed,
    Has,
    Header,
    Length,
    Observation,
    Operand,
    Pattern,
    ResponseTime,
    Status,
    as_number,
    equal,
    placeholder_name,
    show,
)

__all__ = [
    "MAX_CONDITIONS",
    "MAX_CONDITION_LENGTH",
    "MAX_PATH_SEGMENTS",
    "PLACEHOLDERS",
    "Condition",
    "ConditionError",
    "Failed",
    "Observation",
    "compile_condition",
    "compile_conditions",
]

#: Longest condition accepted (characters).
MAX_CONDITION_LENGTH = 512
#: Most conditions (or degraded_when entries) on one deployment.
MAX_CONDITIONS = 32
#: Deepest JSON path accepted (segments).
MAX_PATH_SEGMENTS = 32
PLACEHOLDERS: Final = (
    "STATUS",
    "BODY",
    "RESPONSE_TIME",
    "HEADERS",
    "CERTIFICATE_EXPIRATION",
    "CONNECTED",
)
_COMPARATORS = ("==", "!=", "<=", ">=", "<", ">")  # two-character ones first
_ORDERING = frozenset({"<", "<=", ">", ">="})
_KEY = re.compile(r"[^.\[\]\s()]+")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class ConditionError(ValueError):
    """A condition that cannot be compiled: names the condition, the position and the fix."""

    def __init__(self, condition: str, position: int, problem: str) -> None:
        self.condition = condition
        self.position = position
        self.problem = problem
        super().__init__(f"condition {condition!r} at position {position}: {problem}")


# --- the compiled condition -------------------------------------------------------------


class Condition:
    """One compiled condition; :meth:`check` is None when it holds, else a :class:`Failed`."""

    __slots__ = ("comparator", "left", "right", "text")

    def __init__(self, text: str, left: Operand, comparator: str, right: Operand) -> None:
        self.text = text
        self.left = left
        self.comparator = comparator
        self.right = right

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    def __eq__(self, other: object) -> bool:
        # Compiled from the same text means the same condition (plans compare by value).
        return isinstance(other, Condition) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    @property
    def placeholders(self) -> frozenset[str]:
        """The placeholder names it reads (``{"BODY", "STATUS"}``)."""
        return frozenset(
            n for n in (placeholder_name(self.left), placeholder_name(self.right)) if n
        )

    def check(self, obs: Observation) -> Failed | None:
        left, right = self.left, self.right
        try:
            lv = None if isinstance(left, Pattern) else left.value(obs)
            rv = None if isinstance(right, Pattern) else right.value(obs)
        except Absent as exc:
            return Failed(self.text, f"nothing ({exc})")
        op = self.comparator
        if isinstance(right, Pattern) or isinstance(left, Pattern):
            pattern, seen = (right, lv) if isinstance(right, Pattern) else (left, rv)
            assert isinstance(pattern, Pattern)
            holds = pattern.matches(seen) == (op == "==")
        elif op in _ORDERING:
            a, b = as_number(lv, left), as_number(rv, right)
            if a is None or b is None:
                return Failed(self.text, f"{self._seen(lv, rv)} (not a number)")
            holds = _ORDER[op](a, b)
        else:
            holds = equal(lv, right, rv) == (op == "==")
        return None if holds else Failed(self.text, self._seen(lv, rv))

    def _seen(self, lv: Any, rv: Any) -> str:
        shown = [
            show(v, o)
            for v, o in ((lv, self.left), (rv, self.right))
            if not isinstance(o, Constant | Pattern)
        ]
        return " and ".join(shown) if shown else show(lv, self.left)


_ORDER = {
    "<": float.__lt__,
    "<=": float.__le__,
    ">": float.__gt__,
    ">=": float.__ge__,
}


# --- parsing ----------------------------------------------------------------------------


def compile_conditions(texts: Sequence[str]) -> tuple[Condition, ...]:
    """Compile each condition; :class:`ConditionError` for the first bad one."""
    if len(texts) > MAX_CONDITIONS:
        raise ConditionError(texts[MAX_CONDITIONS], 1, f"at most {MAX_CONDITIONS} conditions")
    return tuple(compile_condition(t) for t in texts)


def compile_condition(text: str) -> Condition:
    """Parse ``text`` once into a :class:`Condition` (see the module docstring)."""
    if not isinstance(text, str):
        raise ConditionError(str(text), 1, "must be a string such as '[STATUS] == 200'")
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionError(text[:40] + "...", 1, f"longer than {MAX_CONDITION_LENGTH} characters")
    if any(c in text for c in "\r\n\0"):
        raise ConditionError(text, 1, "must be one line")
    at, op = _find_comparator(text)
    left = _operand(text, 0, text[:at])
    right = _operand(text, at + len(op), text[at + len(op) :])
    _require_sense(text, left, op, right, at)
    return Condition(text.strip(), left, op, right)


def _find_comparator(text: str) -> tuple[int, str]:
    opened: list[int] = []  # positions of the ( and [ not closed yet
    quote = ""
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "[(":
            opened.append(i)
        elif c in "])":
            if not opened:
                raise ConditionError(text, i + 1, f"{c} closes nothing")
            opened.pop()
        elif not opened:
            for op in _COMPARATORS:
                if text.startswith(op, i):
                    return i, op
    if opened:
        raise ConditionError(text, opened[-1] + 1, f"{text[opened[-1]]} is not closed")
    raise ConditionError(
        text, len(text) + 1, "no comparator: write <placeholder> <== != < <= > >=> <value>"
    )


def _operand(text: str, offset: int, part: str) -> Operand:
    stripped = part.strip()
    pos = offset + (len(part) - len(part.lstrip())) + 1
    if not stripped:
        raise ConditionError(text, pos, "a side of the comparison is empty")
    for fn in ("len", "has", "pat", "any"):
        if stripped.startswith(f"{fn}("):
            if not stripped.endswith(")"):
                raise ConditionError(text, pos, f"{fn}( is not closed with )")
            inner = stripped[len(fn) + 1 : -1]
            inner_pos = pos + len(fn) + 1
            if fn == "pat":
                return Pattern(stripped, _unquote(inner.strip()), ())
            if fn == "any":
                choices = tuple(Constant(c.strip()) for c in inner.split(","))
                if any(not c.text for c in choices):
                    raise ConditionError(text, inner_pos, "any() needs values: any(a, b)")
                return Pattern(stripped, None, choices)
            body = _operand(text, inner_pos - 1, inner)
            if not isinstance(body, BodyPath):
                raise ConditionError(text, inner_pos, f"{fn}() applies to [BODY] only")
            return Length(stripped, body) if fn == "len" else Has(stripped, body)
    if not stripped.startswith("["):
        return Constant(stripped)
    end = stripped.find("]")
    name = stripped[1:end] if end > 0 else stripped[1:]
    if end < 0 or name not in PLACEHOLDERS:
        raise ConditionError(
            text,
            pos,
            f"unknown placeholder [{name.rstrip(']')}]; known: "
            + ", ".join(f"[{p}]" for p in PLACEHOLDERS),
        )
    rest = stripped[end + 1 :]
    rest_pos = pos + end + 1
    if name == "BODY":
        return BodyPath(stripped, _json_path(text, rest_pos, rest))
    if name == "HEADERS":
        if not rest.startswith(".") or not _HEADER_NAME.match(rest[1:]):
            raise ConditionError(text, rest_pos, "[HEADERS] needs a header name: [HEADERS].Name")
        return Header(stripped, rest[1:])
    if rest:
        raise ConditionError(text, rest_pos, f"[{name}] takes no path (only [BODY] does)")
    cls = {
        "STATUS": Status,
        "RESPONSE_TIME": ResponseTime,
        "CERTIFICATE_EXPIRATION": CertExpiry,
        "CONNECTED": Connected,
    }[name]
    return cls(stripped)


def _json_path(text: str, pos: int, rest: str) -> tuple[str | int, ...]:
    path: list[str | int] = []
    i = 0
    while i < len(rest):
        here = pos + i
        if rest[i] == ".":
            m = _KEY.match(rest, i + 1)
            if m is None:
                raise ConditionError(text, here + 1, "a key must follow '.' in the JSON path")
            path.append(m.group(0))
            i = m.end()
        elif rest[i] == "[":
            close = rest.find("]", i)
            index = rest[i + 1 : close] if close > 0 else ""
            if not index.isdigit():
                raise ConditionError(text, here, "an array index must be [0], [1], ...")
            path.append(int(index))
            i = close + 1
        else:
            raise ConditionError(text, here, "the JSON path goes on with .key or [index]")
        if len(path) > MAX_PATH_SEGMENTS:
            raise ConditionError(text, here, f"deeper than {MAX_PATH_SEGMENTS} segments")
    return tuple(path)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _require_sense(text: str, left: Operand, op: str, right: Operand, at: int) -> None:
    """Refuse, at compile time, a comparison that could never mean anything."""
    sides = (left, right)
    patterns = [s for s in sides if isinstance(s, Pattern)]
    if patterns and op not in ("==", "!="):
        raise ConditionError(text, at + 1, f"{patterns[0].text.split('(')[0]}() needs == or !=")
    if len(patterns) == 2:
        raise ConditionError(text, at + 1, "pat()/any() on both sides")
    if all(isinstance(s, Constant | Pattern) for s in sides):
        raise ConditionError(text, 1, "needs a placeholder on one side, e.g. [STATUS] == 200")
    for side, other in ((left, right), (right, left)):
        literals = [other] if isinstance(other, Constant) else []
        if isinstance(other, Pattern) and other.glob is None:
            literals = list(other.choices)
        for lit in literals:
            _require_literal(text, side, lit, op, at)
    if op in _ORDERING:
        for side in sides:
            if side.kind == "bool":
                raise ConditionError(text, at + 1, f"{side.text} is true/false: use == or !=")


def _require_literal(text: str, side: Operand, lit: Constant, op: str, at: int) -> None:
    where = text.find(lit.text, at) + 1 or 1
    if side.kind == "duration":
        try:
            seconds = parse_duration(lit.literal)
        except ValueError:
            raise ConditionError(
                text, where, f"{side.text} compares with a duration such as 48h or 7d"
            ) from None
        lit.number = float(seconds)
        lit.kind = "duration"
    elif side.kind == "number" and lit.number is None:
        raise ConditionError(text, where, f"{side.text} compares with a number, got {lit.text}")
    elif side.kind == "bool" and lit.literal not in ("true", "false"):
        raise ConditionError(text, where, f"{side.text} compares with true or false")
    elif op in _ORDERING and lit.number is None:
        raise ConditionError(text, where, f"{op} needs a number, got {lit.text}")
