"""The configuration's JSON Schema and reference are the models' own: ``crackseg-monitor
schema`` prints the published schema, docs/configuration.md is generated from it, and the
example files point editors at it and use only keys it describes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from tools.config_reference import EXAMPLES, SCHEMA, outputs

from crackseg.utils.deployment.service.config import MonitorConfig

HEADER = "# yaml-language-server: $schema=../docs/crackseg-monitor.schema.json"


def test_the_published_files_are_what_the_models_make() -> None:
    for path, text in outputs().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is stale: run .venv/bin/python -m tools.config_reference"
        )


def test_the_cli_prints_the_published_schema() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "crackseg.utils.deployment.service.cli.main", "schema"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout == SCHEMA.read_text(encoding="utf-8")
    schema = json.loads(out.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["properties"]) == set(MonitorConfig.model_fields) - {"source"}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """``node`` and its alternatives, references followed."""
    if "$ref" in node:
        return _resolve(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[1]])
    found = [node]
    for alt in node.get("anyOf", []):
        found += _resolve(schema, alt)
    return found


def _undescribed(schema: dict[str, Any], node: dict[str, Any], value: Any, path: str) -> list[str]:
    """Keys of ``value`` that the schema ``node`` does not describe."""
    alts = _resolve(schema, node)
    bad: list[str] = []
    if isinstance(value, dict):
        closed = [a for a in alts if "properties" in a and a.get("additionalProperties") is False]
        for key, sub in value.items():
            here = f"{path}.{key}" if path else str(key)
            props = [a["properties"][key] for a in alts if key in a.get("properties", {})]
            if closed and not props:
                bad.append(here)
            for p in props:
                bad += _undescribed(schema, p, sub, here)
    elif isinstance(value, list):
        for a in alts:
            if "items" in a:
                for item in value:
                    bad += _undescribed(schema, a["items"], item, f"{path}[]")
    return bad


def test_the_examples_point_at_the_schema_and_use_only_its_keys() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    for example in EXAMPLES:
        text = example.read_text(encoding="utf-8")
        assert text.splitlines()[0] == HEADER, example
        assert (example.parent / HEADER.split("=", 1)[1]).resolve() == SCHEMA
        assert _undescribed(schema, schema, yaml.safe_load(text), "") == [], example


def test_a_misspelt_key_is_caught_by_the_check() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    wrong = {"server": {"prot": 1}, "deployments": [{"id": "a", "urll": "x"}]}
    assert _undescribed(schema, schema, wrong, "") == ["server.prot", "deployments[].urll"]


def test_durations_are_described_as_the_file_writes_them() -> None:
    schema = json.loads(Path(SCHEMA).read_text(encoding="utf-8"))
    interval = schema["$defs"]["DeploymentSettings"]["properties"]["check_interval"]
    number, text = interval["anyOf"]
    assert (number["type"], number["minimum"], number["maximum"]) == ("number", 0.1, 86400)
    assert text["type"] == "string" and "30s" in text["examples"]
    assert '"ge"' not in json.dumps(schema) and '"le"' not in json.dumps(schema)
