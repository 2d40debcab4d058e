"""One model of a monitored deployment: the library, the YAML file and the API refuse the
same values with the same words (intervals >= 0.1 s, finite numbers, URLs with a host)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.config import ConfigFileError, load_config
from crackseg.utils.deployment.service.web.app import WebServer

TOKEN = "bounds-token"

# (argument, value as Python, as YAML, expected problem)
CASES: list[tuple[str, Any, str, str]] = [
    ("check_interval", 1e-9, "1e-9", "must be >= 0.1, got 1e-09"),
    ("check_interval", 0, "0", "must be >= 0.1, got 0"),
    ("check_interval", 1_000_000, "1000000", "must be <= 86400, got 1000000"),
    ("check_interval", math.inf, ".inf", "must be a finite number, got inf"),
    ("check_interval", math.nan, ".nan", "must be a finite number, got nan"),
    ("timeout", math.inf, ".inf", "must be a finite number, got inf"),
    ("timeout", 0, "0", "must be > 0, got 0"),
    ("timeout", 7200, "7200", "must be <= 3600, got 7200"),
    ("repeat_interval", 0.01, "0.01", "must be >= 0.1, got 0.01"),
    ("failure_threshold", 0, "0", "must be >= 1, got 0"),
    ("health_check_url", "http:///health", "'http:///health'", "with a host"),
    ("health_check_url", "http://:8080/x", "'http://:8080/x'", "with a host"),
    ("health_check_url", "http://h:99999/x", "'http://h:99999/x'", "with a host"),
    ("health_check_url", "ftp://host/x", "'ftp://host/x'", "must be an http:// or https:// URL"),
]
FILE_KEY = {"health_check_url": "url"}
URL = "http://127.0.0.1:9/health"


def _library(arg: str, value: Any) -> str:
    kwargs: dict[str, Any] = {"deployment_id": "d", "health_check_url": URL, arg: value}
    with pytest.raises(ConfigError) as info:
        DeploymentHealthMonitor().add_deployment_monitoring(**kwargs)
    assert info.value.field == arg
    return info.value.problem


def _file(tmp_path: Path, arg: str, yaml_value: str) -> str:
    key = FILE_KEY.get(arg, arg)
    lines = ["deployments:", "  - id: d"]
    if key != "url":
        lines.append(f"    url: {URL}")
    lines.append(f"    {key}: {yaml_value}")
    path = tmp_path / "monitor.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert len(info.value.problems) == 1, info.value.problems
    where, what = info.value.problems[0]
    assert where == f"deployments[0].{key}"
    return what


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    monitor = DeploymentHealthMonitor()
    with WebServer(monitor, token=TOKEN) as server:
        yield server.url
    monitor.close()


def _api(base: str, arg: str, value: Any) -> tuple[int, dict[str, Any]]:
    body = {"deployment_id": "d", "health_check_url": URL, arg: value}
    r = requests.post(
        f"{base}/api/v1/deployments",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    return r.status_code, r.json()


@pytest.mark.parametrize(("arg", "value", "yaml_value", "expected"), CASES)
def test_library_file_and_api_refuse_alike(
    tmp_path: Path, api: str, arg: str, value: Any, yaml_value: str, expected: str
) -> None:
    lib = _library(arg, value)
    assert expected in lib, lib
    assert _file(tmp_path, arg, yaml_value) == lib
    if isinstance(value, float) and not math.isfinite(value):
        return  # JSON has no NaN or infinity: see test_api_refuses_non_finite_json
    status, body = _api(api, arg, value)
    assert status == 400
    assert body == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": lib,
        "field": arg,
    }


def test_api_refuses_non_finite_json(api: str) -> None:
    raw = '{"deployment_id": "d", "health_check_url": "' + URL + '", "timeout": 1e400}'
    r = requests.post(
        f"{api}/api/v1/deployments",
        data=raw,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["field"] == "body" and "infinity" in r.json()["detail"]


def test_the_same_values_are_accepted_everywhere(tmp_path: Path, api: str) -> None:
    m = DeploymentHealthMonitor()
    m.add_deployment_monitoring("d", URL, check_interval=0.1, timeout=3600, repeat_interval=0.1)
    m.close()
    path = tmp_path / "ok.yaml"
    path.write_text(
        f"deployments:\n  - id: d\n    url: {URL}\n    check_interval: 100ms\n    timeout: 1h\n"
    )
    d = load_config(path).deployments[0]
    assert (d.check_interval, d.timeout) == (0.1, 3600.0)
    status, body = _api(api, "check_interval", 0.1)
    assert status == 201, body


def test_monitor_defaults_are_bounded_too() -> None:
    with pytest.raises(ConfigError, match=r"default_timeout: must be a finite number, got inf"):
        DeploymentHealthMonitor(default_timeout=math.inf)
    with pytest.raises(ConfigError, match=r"error_rate_window: must be >= 0.1"):
        DeploymentHealthMonitor(error_rate_window=0.01)
    with pytest.raises(ConfigError, match=r"repeat_interval: must be a finite number, got nan"):
        DeploymentHealthMonitor(repeat_interval=math.nan)


def test_file_monitor_and_store_intervals_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "monitor:\n  default_timeout: .inf\n  flap_window: 1ms\nstore:\n  flush_interval: 1e-9\n"
    )
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert dict(info.value.problems) == {
        "monitor.default_timeout": "must be a finite number, got inf",
        "monitor.flap_window": "must be >= 0.1, got '1ms'",
        "store.flush_interval": "must be >= 0.1, got '1e-9'",
    }
