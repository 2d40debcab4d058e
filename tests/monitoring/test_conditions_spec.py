"""The check fields of the one deployment model: the library and the file give the same
compiled check and the same refusals, worded at the field the user wrote; secrets stay
masked in every dump meant for people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from crackseg.utils.deployment.monitoring.checks.plan import CheckPlan
from crackseg.utils.deployment.monitoring.spec import DeploymentSpec
from crackseg.utils.deployment.service.config import ConfigFileError, parse_config
from crackseg.utils.deployment.validation import problems

FULL: dict[str, Any] = {
    "method": "POST",
    "headers": {"Authorization": "Bearer tok-123456789", "X-Trace": "1"},
    "body": {"inputs": [1, 2], "api_key": "k-987654321"},
    "conditions": ["[STATUS] == 200", "[BODY].ready == true", "[RESPONSE_TIME] < 300"],
    "degraded_when": ["[BODY].status == degraded"],
}


def library(**fields: Any) -> CheckPlan:
    spec = DeploymentSpec(deployment_id="d", health_check_url=fields.pop("url"), **fields)
    return spec.check


def from_file(**fields: Any) -> CheckPlan:
    cfg = parse_config({"deployments": [{"id": "d", **fields}]}, env={})
    return cfg.deployments[0].check


def library_problem(**fields: Any) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        DeploymentSpec.model_validate({"deployment_id": "d", "health_check_url": "", **fields})
    return problems(info.value, DeploymentSpec)[0]


def file_problem(**fields: Any) -> tuple[str, str]:
    with pytest.raises(ConfigFileError) as info:
        parse_config({"deployments": [{"id": "d", **fields}]}, env={})
    line = str(info.value).splitlines()[-1].strip()  # one problem: its line
    where, _, what = line.partition(": ")
    return where.removeprefix("deployments[0]."), what


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "http://127.0.0.1:8080/health"},
        {"url": "https://127.0.0.1:8443/v1/models/m", **FULL},
        {"url": "grpc://127.0.0.1:8001", "type": "grpc", "service": "crackseg"},
        {"url": "tcp://127.0.0.1:6379", "type": "tcp", "conditions": ["[RESPONSE_TIME] < 50"]},
        {"url": "http://127.0.0.1:8080", "preset": "torchserve"},
        {"url": "http://127.0.0.1:8080", "preset": "kserve_v2", "model": "crackseg"},
        {"url": "grpc://127.0.0.1:8001", "preset": "triton"},
    ],
)
def test_the_library_and_the_file_compile_the_same_check(fields: dict[str, Any]) -> None:
    lib = library(**dict(fields))
    file = from_file(**{("url" if k == "url" else k): v for k, v in fields.items()})
    assert lib == file
    assert lib.explain() == file.explain()


BAD: list[tuple[dict[str, Any], str, str]] = [
    (
        {"url": "http://h/x", "headers": {"X-Evil": "a\r\nInjected: 1"}},
        "headers.X-Evil",
        "must be one line (no CR, LF or NUL)",
    ),
    (
        {"url": "http://h/x", "method": "POST", "body": "x" * (64 * 1024 + 1)},
        "body",
        "at most 65536 bytes, got 65537",
    ),
    (
        {"url": "http://h/x", "body": {"a": 1}},
        "body",
        "a GET request sends no body; use POST, PUT or PATCH",
    ),
    ({"url": "http://h/x", "method": "DELETE"}, "method", "must be one of"),
    (
        {"url": "http://h/x", "conditions": ["[STATUS] == 200", "[IP] == 1"]},
        "conditions[1]",
        "condition '[IP] == 1' at position 1: unknown placeholder [IP]",
    ),
    (
        {"url": "http://h/x", "degraded_when": ["[BODY].a[x] == 1"]},
        "degraded_when[0]",
        "condition '[BODY].a[x] == 1' at position 9: an array index",
    ),
    (
        {"url": "http://h/x", "conditions": ["[CERTIFICATE_EXPIRATION] > 7d"]},
        "conditions[0]",
        "no TLS on this check: use an https:// URL",
    ),
    (
        {"url": "tcp://h:1", "type": "tcp", "conditions": ["[STATUS] == 200"]},
        "conditions[0]",
        "a tcp check has no HTTP answer",
    ),
    ({"url": "tcp://h", "type": "tcp"}, "url", "a tcp check needs tcp://host:port (no path)"),
    ({"url": "http://h:1", "preset": "kserve_v1"}, "model", "preset kserve_v1 needs a model"),
    ({"url": "http://h:1", "preset": "nope"}, "preset", "must be one of"),
    ({"url": "http://h:1", "model": "m"}, "model", "applies with a preset only"),
    ({"url": "http://h/x", "service": "s"}, "service", "applies to type grpc only"),
    ({"url": "http://h/x", "tls": {"verify": False}}, "tls", "applies to https://"),
    ({"url": "https://h/x", "tls": {"ca_file": "/nope.pem"}}, "tls.ca_file", "no such file"),
    (
        {"url": "https://h/x", "tls": {"key_file": "/etc/hostname"}},
        "tls",
        "key_file needs cert_file",
    ),
    ({"url": "http://h/x", "headers": {f"H{i}": "v" for i in range(33)}}, "headers", "at most"),
]


@pytest.mark.parametrize(("fields", "where", "what"), BAD)
def test_the_library_and_the_file_refuse_alike(
    fields: dict[str, Any], where: str, what: str
) -> None:
    lib_fields = dict(fields)
    lib_fields["health_check_url"] = lib_fields.pop("url")
    lib_where, lib_what = library_problem(**lib_fields)
    file_where, file_what = file_problem(**fields)
    assert what in lib_what, (lib_where, lib_what)
    assert lib_what == file_what
    # the same field, named as each path names it (health_check_url is the file's url)
    assert lib_where.replace("health_check_url", "url") == where
    assert file_where == where


def test_values_substituted_by_the_file_are_secrets(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "deployments": [
                {
                    "id": "d",
                    "url": "http://127.0.0.1:1/health",
                    "method": "POST",
                    "headers": {"X-Model-Token": "${MODEL_TOKEN}", "X-Plain": "${REGION}"},
                    "body": "user=svc&pin=${PIN}",
                }
            ]
        },
        env={"MODEL_TOKEN": "mt-abcdefgh", "REGION": "eu-1", "PIN": "4711-4711"},
    )
    d = cfg.deployments[0]
    plan = d.check
    assert dict(plan.headers)["X-Model-Token"] == "mt-abcdefgh"  # sent as resolved
    assert set(plan.secrets) >= {"mt-abcdefgh", "4711-4711", "eu-1"}
    shown = json.dumps(cfg.redacted())
    for secret in ("mt-abcdefgh", "4711-4711"):
        assert secret not in shown
    assert secret not in json.dumps(plan.explain())
    assert secret not in d.model_dump_json()


def test_secret_named_headers_and_body_keys_are_masked_in_dumps() -> None:
    spec = DeploymentSpec(deployment_id="d", health_check_url="http://h/x", **FULL)
    assert spec.check.secrets == ("Bearer tok-123456789", "k-987654321")
    dumped = spec.model_dump_json()
    assert "tok-123456789" not in dumped and "k-987654321" not in dumped
    assert '"X-Trace":"1"' in dumped  # a harmless header stays readable
    # the Python dump is what the API hands the monitor: the real values
    assert spec.model_dump()["headers"]["Authorization"] == "Bearer tok-123456789"
