"""JSON Schema fragments worded for a Markdown table (shared by the reference generators)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["bounds_text", "cell", "type_text"]

_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
           ("exclusiveMaximum", "<"), ("minLength", "length >="), ("maxLength", "length <="),
           ("minItems", "items >="), ("maxItems", "items <="), ("pattern", "matches"))  # fmt: skip


def type_text(schema: dict[str, Any], link: bool = True) -> str:
    """``schema``'s type in words (a ``$ref`` as a link to its section when ``link``)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})" if link else name
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(type_text(s, link) for s in schema[key])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {type_text(schema.get('items', {}), link)}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if schema.get("format") == "date-time":
        return "RFC 3339 time"
    if kind == "string" and "pattern" in schema and "examples" in schema:
        return "duration string"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {type_text(schema['additionalProperties'], link)}"
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind)


def bounds_text(schema: dict[str, Any]) -> str:
    """The limits ``schema`` (or any of its alternatives) sets, e.g. ``>= `1`, <= `10```."""
    parts = []
    for s in _alternatives(schema):
        if s.get("type") == "string" and "examples" in s:
            continue  # a duration's text form: its pattern is no limit worth a cell
        parts += [f"{sign} `{s[key]}`" for key, sign in _BOUNDS if key in s]
    return ", ".join(dict.fromkeys(parts))


def _alternatives(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """``schema`` and every alternative nested in its ``anyOf``/``oneOf``."""
    found = [schema]
    for key in ("anyOf", "oneOf"):
        for s in schema.get(key, []):
            found += _alternatives(s)
    return found


def cell(text: Any) -> str:
    """``text`` safe inside a Markdown table cell, its reStructuredText roles as plain code."""
    plain = re.sub(r":\w+:`~?([\w.]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", str(text))
    return plain.replace("``", "`").replace("|", "\\|").replace("\n", " ")
