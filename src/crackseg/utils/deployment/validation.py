"""One wording of pydantic's validation errors, for every model of the project.

The library (``add_deployment_monitoring``), the configuration file, the REST API and the
handler options all validate with pydantic; :func:`problems` turns any of their
:class:`~pydantic.ValidationError` into ``(key path, what is expected)`` pairs, one per
problem, so the same mistake reads the same wherever it is made. An unknown key names the
keys its mapping accepts, with the closest one as a suggestion.

>>> from pydantic import BaseModel, ConfigDict
>>> class Opts(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     timeout: float = 1.0
>>> try:
...     Opts.model_validate({"timout": 2, "timeout": "x"})
... except ValidationError as exc:
...     problems(exc, Opts)
[('timeout', "must be a number, got 'x'"), ('timout', "unknown key (did you mean 'timeout'?); expected one of: timeout")]
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from crackseg.utils.deployment.redact import is_secret_key

__all__ = ["error_message", "loc_path", "problems", "shown_value"]

_SHOWN_MAX = 60

_COMPARISONS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def loc_path(loc: tuple[int | str, ...]) -> str:
    """``("deployments", 2, "timeout")`` as ``deployments[2].timeout``; a refused key of a
    mapping as ``repeat_intervals['cpu']``."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif loc[i + 1 : i + 2] == ("[key]",):  # the key of a mapping was refused
            out += f"[{part!r}]"
        elif part not in ("source", "[key]") and not part.startswith("function-"):
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


def _unwrap(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and ``| None`` (a union of several types stays)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(args) == 1:
                tp = args[0]
            elif len(models) == 1:  # ``float | SomeModel``: the mapping form is the model
                tp = models[0]
            else:
                return tp
        else:
            return tp


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that holds the key at ``loc`` (following fields, list items, dict values)."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int) or typing.get_origin(tp) is dict:
            args = typing.get_args(tp)
            if not args:
                return None
            tp = args[-1]
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) or next(
                (f for f in tp.model_fields.values() if f.alias == part), None
            )
            if field is None:
                return None
            tp = field.annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unknown_key(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    model = _model_at(root, loc[:-1])
    if model is None:
        return "unknown key"
    allowed = [f.alias or n for n, f in model.model_fields.items() if not f.exclude]
    hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    msg = "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    return f"{msg}; expected one of: {', '.join(allowed)}"


def problems(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """Every problem of ``exc`` (raised validating ``root``) as ``(key path, what is
    expected)``, in pydantic's order."""
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(
            p for p in err["loc"] if isinstance(p, int) or not str(p).startswith("function-")
        )
        path = loc_path(loc)
        if err["type"] == "extra_forbidden":
            out.append((path, _unknown_key(root, loc)))
        else:
            out.append((path, error_message(err, path)))
    return out
