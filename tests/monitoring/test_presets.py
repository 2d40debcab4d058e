"""Model-server presets expand into what each server's documentation specifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from crackseg.utils.deployment.monitoring.checks.plan import build_plan
from crackseg.utils.deployment.monitoring.checks.presets import PRESETS, expand
from tests.support.flip_server import Answer, FlipServer


@pytest.mark.parametrize(
    ("preset", "url", "model", "expected_url", "conditions"),
    [
        # KServe V1 protocol, Model Ready: GET v1/models/<name> -> {"name", "ready": bool}
        ("kserve_v1", "http://h:8080", "crackseg", "http://h:8080/v1/models/crackseg",
         ("[STATUS] == 200", "[BODY].ready == true")),
        # Open Inference Protocol: Server Ready / Model Ready, 200 = true, 4xx = false
        ("kserve_v2", "http://h:8080", None, "http://h:8080/v2/health/ready",
         ("[STATUS] == 200",)),
        ("kserve_v2", "https://h/serving/", "crackseg",
         "https://h/serving/v2/models/crackseg/ready", ("[STATUS] == 200",)),
        # Triton over HTTP: the Open Inference Protocol endpoints
        ("triton", "http://h:8000", "crackseg", "http://h:8000/v2/models/crackseg/ready",
         ("[STATUS] == 200",)),
        # TorchServe Inference API health check: GET /ping -> {"status": "Healthy"}
        ("torchserve", "http://h:8080", None, "http://h:8080/ping",
         ("[STATUS] == 200", "[BODY].status == Healthy")),
    ],
)  # fmt: skip
def test_http_presets(
    preset: str, url: str, model: str | None, expected_url: str, conditions: tuple[str, ...]
) -> None:
    x = expand(preset, url, model)
    assert (x.type, x.url, x.method, x.conditions) == ("http", expected_url, "GET", conditions)


def test_triton_over_grpc_asks_the_standard_health_service() -> None:
    x = expand("triton", "grpc://h:8001", None)
    assert (x.type, x.url, x.service, x.conditions) == ("grpc", "grpc://h:8001", "", ())


@pytest.mark.parametrize(
    ("preset", "url", "model", "message"),
    [
        ("kserve_v1", "http://h", None, "model: preset kserve_v1 needs a model"),
        ("torchserve", "http://h", "m", "model: preset torchserve checks the server"),
        ("triton", "grpc://h:1", "m", "model: triton over gRPC checks the server"),
        ("kserve_v2", "grpc://h:1", None, "preset: kserve_v2 needs an http:// or https://"),
        ("kserve_v2", "http://h", "../admin", "model: must be 1-128 letters"),
        ("seldon", "http://h", None, "preset: unknown preset 'seldon'"),
    ],
)
def test_what_a_preset_cannot_mean_is_refused(
    preset: str, url: str, model: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        expand(preset, url, model)


def test_every_preset_is_documented_in_the_module() -> None:
    from crackseg.utils.deployment.monitoring.checks import presets

    assert presets.__doc__ is not None
    for name in PRESETS:
        assert f"``{name}``" in presets.__doc__


def test_validate_explain_shows_each_expansion_with_secrets_masked(tmp_path: Path) -> None:
    from tests.support.service_helpers import cli

    f = tmp_path / "presets.yaml"
    f.write_text(
        """
deployments:
  - id: torchserve
    preset: torchserve
    url: http://127.0.0.1:8080
  - id: kserve
    preset: kserve_v1
    model: crackseg
    url: http://127.0.0.1:8081
    headers: {Authorization: "Bearer ${MODEL_TOKEN}"}
    conditions: ["[RESPONSE_TIME] < 300"]
server: {port: 0}
"""
    )
    r = cli("validate", "--explain", str(f), MODEL_TOKEN="mt-secret-123456")
    assert r.returncode == 0, r.stderr
    assert "mt-secret-123456" not in r.stdout
    blocks = json.loads("[" + r.stdout.split("\n", 1)[1].replace("}\n{", "},\n{") + "]")
    assert blocks[0] == {
        "id": "torchserve",
        "type": "http",
        "url": "http://127.0.0.1:8080/ping",
        "method": "GET",
        "preset": "torchserve",
        "conditions": ["[STATUS] == 200", "[BODY].status == Healthy"],
    }
    assert blocks[1]["url"] == "http://127.0.0.1:8081/v1/models/crackseg"
    assert blocks[1]["headers"] == {"Authorization": "***"}
    assert blocks[1]["conditions"] == [
        "[STATUS] == 200",
        "[BODY].ready == true",
        "[RESPONSE_TIME] < 300",
    ]


# Stand-ins answering as each server's documentation says (the documents named per case).
STANDINS: list[tuple[str, str | None, str, Answer, Answer, str]] = [
    # KServe V1 protocol, "Model Ready": 200 {"name": ..., "ready": $bool}
    ("kserve_v1", "crackseg", "/v1/models/crackseg",
     Answer(200, b'{"name": "crackseg", "ready": true}'),
     Answer(200, b'{"name": "crackseg", "ready": false}'),
     "[BODY].ready == true: got false"),
    # Open Inference Protocol (inference_rest.md), "Model Ready": 200 true, 4xx false,
    # empty bodies
    ("kserve_v2", "crackseg", "/v2/models/crackseg/ready",
     Answer(200, b"", {}), Answer(400, b"", {}), "[STATUS] == 200: got 400"),
    ("kserve_v2", None, "/v2/health/ready",
     Answer(200, b"", {}), Answer(400, b"", {}), "[STATUS] == 200: got 400"),
    # Triton over HTTP: the Open Inference Protocol's endpoints (Triton's protocol docs)
    ("triton", "crackseg", "/v2/models/crackseg/ready",
     Answer(200, b"", {}), Answer(400, b"", {}), "[STATUS] == 200: got 400"),
    # TorchServe Inference API, "Health check API": {"status": "Healthy"}; a backend
    # that is not up answers 500 {"status": "Unhealthy"}
    ("torchserve", None, "/ping",
     Answer(200, b'{"status": "Healthy"}'), Answer(500, b'{"status": "Unhealthy"}'),
     "[STATUS] == 200: got 500"),
]  # fmt: skip


@pytest.mark.parametrize(("preset", "model", "path", "ready", "not_ready", "message"), STANDINS)
def test_each_preset_against_a_stand_in(
    preset: str, model: str | None, path: str, ready: Answer, not_ready: Answer, message: str
) -> None:
    checker = DefaultHealthChecker()
    try:
        with FlipServer() as srv:
            plan = build_plan(url=srv.url(""), preset=preset, model=model)
            srv.routes[path] = ready
            result = checker.check_plan(plan, 5)
            assert result.success, result
            assert (srv.seen[-1].method, srv.seen[-1].path) == ("GET", path)
            srv.routes[path] = not_ready
            result = checker.check_plan(plan, 5)
            assert (result.status, result.error_message) == ("unhealthy", message)
    finally:
        checker.close()


def test_torchserve_reads_its_capital_h_and_nothing_else() -> None:
    """``{"status": "healthy"}`` is not TorchServe's word: the preset compares as written."""
    checker = DefaultHealthChecker()
    try:
        with FlipServer() as srv:
            srv.routes["/ping"] = Answer(200, b'{"status": "healthy"}')
            result = checker.check_plan(build_plan(url=srv.url(""), preset="torchserve"), 5)
            assert result.error_message == '[BODY].status == Healthy: got "healthy"'
    finally:
        checker.close()
