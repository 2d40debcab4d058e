"""``crackseg-monitor schema``: the JSON Schema of the whole configuration file, from the
pydantic models that load it (:class:`~crackseg.utils.deployment.service.config.MonitorConfig`).

Editors validate and complete the YAML with it: put
``# yaml-language-server: $schema=<path or URL of the schema>`` on a file's first line
(docs/crackseg-monitor.schema.json is this command's output, checked by the tests).
Durations are numbers of seconds or strings such as ``30s``; ``${VAR}`` is replaced before
validation, so a value written as one is only checked when the file is loaded.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from typing import Any

import typer
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from crackseg.utils.deployment.durations import DURATION_PATTERN, parse_duration
from crackseg.utils.deployment.service.config import MonitorConfig

__all__ = ["SCHEMA_ID", "config_schema", "schema", "schema_text"]

#: Where the schema is published in the repository.
SCHEMA_ID = "docs/crackseg-monitor.schema.json"
# pydantic leaves constraints on a wrapped type as its own keywords: JSON Schema's names.
_KEYWORDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def _reads_durations(function: Any) -> bool:
    """Whether a before-validator reads durations (``parse_duration`` itself, or a field
    validator calling it): it turns ``"2m"`` into 120 seconds."""
    if function.get("type") != "no-info":
        return False
    call = function["function"]
    if call is parse_duration:
        return True
    try:
        return bool(call("2m") == 120.0)
    except Exception:  # a validator refusing the text is simply not one of durations
        return False


class _ConfigSchema(GenerateJsonSchema):
    """Durations as what the file accepts: seconds, or a string such as ``30s``."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        if _reads_durations(schema["function"]):
            inner = self.generate_inner(schema["schema"])
            text = {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "5m"]}
            return {"anyOf": [inner, text]}
        return super().function_before_schema(schema)


def _standard(node: Any, *, names: bool = False) -> Any:
    """``node`` with pydantic's leftover ``ge``/``gt``/``le``/``lt`` renamed (``names``: node
    maps property names, which are kept as they are)."""
    if isinstance(node, list):
        return [_standard(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        name = key if names else _KEYWORDS.get(key, key)
        out[name] = _standard(value, names=key in ("properties", "$defs") and not names)
    return out


def _models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """``root`` and every model its fields hold (at any depth), by class name."""
    found: dict[str, type[BaseModel]] = {}
    todo: list[Any] = [root]
    while todo:
        kind = todo.pop()
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if kind.__name__ not in found:
                found[kind.__name__] = kind
                todo += [f.annotation for f in kind.model_fields.values()]
        else:
            todo += typing.get_args(kind)
    return found


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """The ``#:`` comment above each field of ``model``'s own source, by field name."""
    try:
        lines, _ = inspect.getsourcelines(model)
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        field = re.match(r"(\w+)\s*:", text)
        if field and pending:
            found[field.group(1)] = " ".join(pending).replace("``", "`")
        pending = []
    return found


def _describe(raw: dict[str, Any]) -> None:
    """Give each undescribed property the ``#:`` comment its model's source has for it."""
    models = _models(MonitorConfig)
    for name, schema in [("MonitorConfig", raw), *raw.get("$defs", {}).items()]:
        model = models.get(name)
        if model is None:
            continue
        notes = _comments(model)
        for field_name, info in model.model_fields.items():
            key = info.alias or field_name
            prop = schema.get("properties", {}).get(key)
            if prop is not None and "description" not in prop and field_name in notes:
                prop["description"] = notes[field_name]


def config_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the configuration file."""
    raw = MonitorConfig.model_json_schema(mode="validation", schema_generator=_ConfigSchema)
    _describe(raw)
    internal = [n for n, f in MonitorConfig.model_fields.items() if f.exclude]
    for name in internal:  # set by the loader, never written in the file
        raw["properties"].pop(name, None)
    doc: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "crackseg-monitor configuration",
    }
    doc.update(_standard(raw))
    doc["title"] = "crackseg-monitor configuration"
    return doc


def schema_text() -> str:
    """:func:`config_schema` as the published file holds it."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


def schema() -> None:
    """Print the JSON Schema of the configuration file (for editors: yaml-language-server)."""
    typer.echo(schema_text(), nl=False)
