"""The served OpenAPI description is the models' own: it fails when they differ."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.spec import (
    DEPLOYMENT_ID_PATTERN,
    MAX_INTERVAL,
    MAX_TIMEOUT,
    MIN_INTERVAL,
)
from crackseg.utils.deployment.service.web.app import STATIC_DIR, WebServer
from crackseg.utils.deployment.service.web.openapi import REQUEST_MODELS, request_schemas


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, Any]]:
    monitor = DeploymentHealthMonitor()
    with WebServer(monitor) as server:
        r = requests.get(f"{server.url}/api/v1/openapi.json", timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
        yield r.json()
    monitor.close()


def test_request_bodies_are_the_models_schemas(served: dict[str, Any]) -> None:
    schemas = served["components"]["schemas"]
    generated = request_schemas()
    assert {m.__name__ for m in REQUEST_MODELS} <= set(generated)
    for name, schema in generated.items():
        assert schemas.get(name) == schema, f"{name}: served description differs from the model"


def test_every_request_body_names_a_model(served: dict[str, Any]) -> None:
    names = {m.__name__ for m in REQUEST_MODELS}
    bodies = {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for ops in served["paths"].values()
        for op in ops.values()
        if "requestBody" in op
    }
    assert bodies == names


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_every_reference_resolves_and_nothing_is_openapi_3_0(served: dict[str, Any]) -> None:
    assert served["openapi"] == "3.1.0"
    for ref in _refs(served):
        assert ref.startswith("#/components/"), ref
        _, _, kind, name = ref.split("/")
        assert name in served["components"][kind], ref
    assert '"nullable"' not in json.dumps(served)  # 3.0 syntax; 3.1 uses type null


def test_the_limits_are_described(served: dict[str, Any]) -> None:
    spec = served["components"]["schemas"]["DeploymentSpec"]["properties"]
    assert spec["check_interval"]["minimum"] == MIN_INTERVAL
    assert spec["check_interval"]["maximum"] == MAX_INTERVAL
    timeout = spec["timeout"]["anyOf"][0]
    assert timeout["exclusiveMinimum"] == 0 and timeout["maximum"] == MAX_TIMEOUT
    assert spec["deployment_id"]["pattern"] == DEPLOYMENT_ID_PATTERN
    assert served["components"]["schemas"]["DeploymentSpec"]["additionalProperties"] is False


def test_no_hand_written_copy_is_served() -> None:
    assert not (STATIC_DIR / "openapi.json").exists()
