"""The same check through the library, the file and ``POST /api/v1/deployments``: the same
compiled check, the same refusals (issue 21's differential test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.config import ConfigFileError, load_config
from crackseg.utils.deployment.service.web.app import WebServer

TOKEN = "paths-token"

CHECKS: list[dict[str, Any]] = [
    {"url": "http://127.0.0.1:9/health"},
    {
        "url": "https://127.0.0.1:9/v1/models/m",
        "method": "POST",
        "headers": {"Authorization": "Bearer tok-123456789", "X-Trace": "1"},
        "body": {"inputs": [1, 2]},
        "conditions": ["[STATUS] == 200", "[BODY].ready == true", "[RESPONSE_TIME] < 300"],
        "degraded_when": ["[BODY].status == degraded"],
        "tls": {"verify": False},
    },
    {"url": "grpc://127.0.0.1:9", "type": "grpc", "service": "crackseg"},
    {"url": "tcp://127.0.0.1:9", "type": "tcp", "conditions": ["[RESPONSE_TIME] < 50"]},
    {"url": "http://127.0.0.1:9", "preset": "kserve_v1", "model": "crackseg"},
    {"url": "http://127.0.0.1:9", "preset": "torchserve"},
]
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"headers": {"X-Evil": "a\r\nInjected: 1"}}, "headers.X-Evil", "must be one line"),
    ({"method": "POST", "body": "x" * 70_000}, "body", "at most 65536 bytes, got 70000"),
    ({"conditions": ["[STATUS] == 200", "[IP] == 1"]}, "conditions[1]", "unknown placeholder"),
    ({"degraded_when": ["len([BODY].a > 1"]}, "degraded_when[0]", "( is not closed"),
    ({"preset": "kserve_v1"}, "model", "preset kserve_v1 needs a model"),
    ({"tls": {"verify": False}}, "tls", "applies to https://"),
    ({"type": "tcp"}, "health_check_url", "a tcp check needs tcp://host:port"),
]


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[DeploymentHealthMonitor, str]]:
    monitor = DeploymentHealthMonitor()
    with WebServer(monitor, token=TOKEN) as server:
        yield monitor, server.url
    monitor.close()


def _post(base: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{base}/api/v1/deployments", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip


def _delete(base: str, dep_id: str) -> None:
    requests.delete(f"{base}/api/v1/deployments/{dep_id}", timeout=10,
                    headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip


def _file(tmp_path: Path, fields: dict[str, Any]) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump({"deployments": [{"id": "d", **fields}]}))
    return path


@pytest.mark.parametrize("fields", CHECKS)
def test_the_same_check_on_every_path(
    tmp_path: Path, service: tuple[DeploymentHealthMonitor, str], fields: dict[str, Any]
) -> None:
    api_monitor, base = service
    lib = DeploymentHealthMonitor()
    from_file = DeploymentHealthMonitor()
    try:
        args = {k: v for k, v in fields.items() if k != "url"}
        lib.add_deployment_monitoring("d", fields["url"], **args)
        d = load_config(_file(tmp_path, fields)).deployments[0]
        from_file.add_deployment_monitoring(**d.monitor_kwargs())
        r = _post(base, {"deployment_id": "d", "health_check_url": fields["url"], **args})
        assert r.status_code == 201, r.text
        configs = [m.monitored_deployments["d"] for m in (lib, from_file, api_monitor)]
        assert configs[0] == configs[1] == configs[2]
        plans = [m._deployments["d"].plan for m in (lib, from_file, api_monitor)]
        assert plans[0] == plans[1] == plans[2]
        if len(fields) > 1:
            assert "check" in configs[0]
            assert "tok-123456789" not in str(configs[0])
    finally:
        _delete(base, "d")
        lib.close()
        from_file.close()


@pytest.mark.parametrize(("fields", "where", "what"), BAD)
def test_the_same_refusal_on_every_path(
    tmp_path: Path,
    service: tuple[DeploymentHealthMonitor, str],
    fields: dict[str, Any],
    where: str,
    what: str,
) -> None:
    url = "http://127.0.0.1:9/health"
    with pytest.raises(ConfigError) as info:
        DeploymentHealthMonitor().add_deployment_monitoring("d", url, **fields)
    lib_field, lib_problem = info.value.field, info.value.problem
    assert what in lib_problem
    assert lib_field == where
    with pytest.raises(ConfigFileError) as file_info:
        load_config(_file(tmp_path, {"url": url, **fields}))
    assert file_info.value.problems == [
        (f"deployments[0].{where.replace('health_check_url', 'url')}", lib_problem)
    ]
    r = _post(service[1], {"deployment_id": "d", "health_check_url": url, **fields})
    if where == "body":
        # The API's own bound on a request (64 KiB) comes first: the same field refused.
        assert (r.status_code, r.json()["field"]) == (413, "body")
        return
    assert r.status_code == 400
    assert r.json() == {
        "type": "about:blank", "title": "Bad Request", "status": 400,
        "detail": lib_problem, "field": where,
    }  # fmt: skip
