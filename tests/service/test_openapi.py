"""The served OpenAPI description is generated from the routes and their models, and every
answer the suite sees is held to it (``CRACKSEG_CHECK_ANSWERS``, set by tests/conftest.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from aiohttp import web

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.spec import (
    DEPLOYMENT_ID_PATTERN,
    MAX_INTERVAL,
    MAX_TIMEOUT,
    MIN_INTERVAL,
)
from crackseg.utils.deployment.service.metrics import package_version
from crackseg.utils.deployment.service.web.app import (
    ALL_OPS,
    CHECK_ANSWERS_ENV,
    STATIC_DIR,
    WebServer,
)
from crackseg.utils.deployment.service.web.openapi import request_models, request_schemas
from crackseg.utils.deployment.service.web.operations import Op, check_answer


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
    generated = request_schemas(ALL_OPS)
    assert {"DeploymentSpec", "NewSilence", "RetryRequest"} <= set(generated)
    for name, schema in generated.items():
        assert schemas.get(name) == schema, f"{name}: served description differs from the model"


def test_every_request_body_names_a_model(served: dict[str, Any]) -> None:
    bodies = {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for ops in served["paths"].values()
        for op in ops.values()
        if "requestBody" in op
    }
    assert bodies == {m.__name__ for m in request_models(ALL_OPS)}


def test_every_route_is_described_with_its_answers(served: dict[str, Any]) -> None:
    assert served["info"]["version"] == package_version()
    for op in ALL_OPS:
        described = served["paths"][op.url("/api/v1")][op.method.lower()]
        for status, model in op.answers.items():
            answer = described["responses"][str(status)]
            if model is not None:
                ref = answer["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/" + model.__name__), (op.path, status)
        for status in op.errors:
            ref = described["responses"][str(status)]["$ref"]
            problem = served["components"]["responses"][ref.rsplit("/", 1)[1]]
            assert "application/problem+json" in problem["content"]
    history = served["paths"]["/api/v1/deployments/{id}/history"]["get"]
    since = next(p for p in history["parameters"] if p["name"] == "since")
    assert {"type": "string", "format": "date-time"} in since["schema"]["oneOf"]
    listed = served["paths"]["/api/v1/deployments"]["get"]["parameters"]
    assert {p["name"] for p in listed} >= {"limit", "cursor"}
    limit = next(p for p in listed if p["name"] == "limit")
    assert limit["schema"]["default"] == 100 and limit["schema"]["maximum"] == 1_000


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


def test_the_suite_checks_every_answer() -> None:
    assert os.environ.get(CHECK_ANSWERS_ENV) == "1"


async def _nothing(request: web.Request) -> web.StreamResponse:
    raise AssertionError("not called")


def test_an_answer_off_its_model_is_caught() -> None:
    op = next(o for o in ALL_OPS if o.method == "GET" and o.path == "/deployments/{id}")
    assert check_answer(op, 404, b'{"type": "about:blank", "title": "Not Found", "status": 404,'
                        b' "detail": "no", "field": null}') is None  # fmt: skip
    why = check_answer(op, 200, b'{"deployment_id": "a"}')
    assert why is not None and why.startswith("DeploymentStatus.")
    assert check_answer(op, 418, b"{}") == "status 418 is not documented"
    assert check_answer(op, 201, b"{}") == "status 201 is not documented"
    assert check_answer(op, 308, b"moved") is None  # a redirect's body is no answer
    # an undocumented key is drift too
    extra = b'{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no",'
    assert "extra" in str(check_answer(op, 404, extra + b' "field": null, "extra": 1}'))
    plain = Op("GET", "/x", _nothing, "x", "x", {200: None})
    assert check_answer(plain, 200, b"anything") is None


class _Drifting(DeploymentHealthMonitor):
    """A monitor whose statuses carry a key the document does not describe."""

    def get_all_deployment_statuses(self) -> dict[str, dict[str, Any]]:
        return {k: {**v, "new_key": 1} for k, v in super().get_all_deployment_statuses().items()}


def test_a_served_answer_off_its_model_is_a_500() -> None:
    monitor = _Drifting()
    monitor.add_deployment_monitoring("a", "http://127.0.0.1:9/health", check_interval=60)
    try:
        with WebServer(monitor) as server:
            r = requests.get(f"{server.url}/api/v1/deployments", timeout=10)
    finally:
        monitor.close()
    assert r.status_code == 500, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "new_key" in r.json()["detail"]
