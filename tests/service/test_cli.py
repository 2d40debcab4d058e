"""``crackseg-monitor`` run as a user runs it: a subprocess against real local servers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.service_helpers import Endpoint, cli


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_exit_codes_follow_health(endpoint: Endpoint) -> None:
    r = cli("check", endpoint.url, "--timeout", "5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("healthy") and "HTTP 200" in r.stdout

    endpoint.status, endpoint.body = 503, {"status": "degraded"}
    r = cli("check", endpoint.url, "--timeout", "5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("degraded")
    r = cli("check", endpoint.url, "--timeout", "5", "--no-degraded-ok")
    assert r.returncode == 1, r.stdout + r.stderr

    endpoint.status, endpoint.body = 500, {"status": "unhealthy"}
    r = cli("check", endpoint.url, "--timeout", "5", "--json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["status"] == "unhealthy" and data["details"]["http_status"] == 500
    assert data["success"] is False


def test_check_of_a_closed_port_is_unhealthy_without_traceback() -> None:
    r = cli("check", f"http://127.0.0.1:{_closed_port()}/health", "--timeout", "2")
    assert r.returncode == 1
    assert r.stdout.startswith("unhealthy")
    assert "Traceback" not in r.stderr


def test_check_rejects_a_non_http_url_in_one_line() -> None:
    r = cli("check", "ftp://example/health")
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        == "error: URL: must start with http:// or https://, got 'ftp://example/health'"
    )


def test_wait_returns_once_the_service_becomes_healthy(endpoint: Endpoint) -> None:
    endpoint.status, endpoint.body = 503, {"status": "starting"}
    # The service recovers while `wait` polls: a timer flips it after a few polls.
    timer = threading.Timer(0.8, lambda: setattr(endpoint, "status", 200))
    timer.start()
    try:
        r = cli("wait", endpoint.url, "--max-wait", "30", "--interval", "0.1")
    finally:
        timer.cancel()
    assert r.returncode == 0, r.stderr
    assert "healthy after" in r.stdout


def test_wait_gives_up_after_max_wait(endpoint: Endpoint) -> None:
    endpoint.status = 500
    r = cli("wait", endpoint.url, "--max-wait", "0.5", "--interval", "0.1")
    assert r.returncode == 1
    assert "not healthy after" in r.stderr and "Traceback" not in r.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_validate_accepts_a_good_file(tmp_path: Path, endpoint: Endpoint) -> None:
    f = _write(
        tmp_path / "ok.yaml",
        f"""
deployments:
  - id: api
    url: {endpoint.url}
    check_interval: 5s
    thresholds: {{response_time_ms: 250}}
handlers:
  - type: log
store: {{path: hist.db, retention: {{max_age: 7d, max_rows: 100000}}}}
server: {{port: 0}}
""",
    )
    r = cli("validate", str(f))
    assert r.returncode == 0, r.stderr
    assert "OK (1 deployment(s), 1 handler(s)" in r.stdout
    assert str(tmp_path / "hist.db") in r.stdout


def test_validate_names_every_problem_by_key_path(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "bad.yaml",
        """
deployments:
  - id: api
    url: http://127.0.0.1:1/health
  - id: api
    url: http://127.0.0.1:2/health
  - id: worker
    url: http://127.0.0.1:3/health
    check_interval: 0
    chek_timeout: 3
server:
  port: seventy
""",
    )
    r = cli("validate", str(f))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"{f}: 4 problems"
    body = "\n".join(lines[1:])
    assert "deployments[1].id: duplicate id 'api' (already used by deployments[0])" in body
    assert "deployments[2].check_interval: must be >= 0.1, got 0" in body
    assert "deployments[2].chek_timeout: unknown key" in body
    assert "server.port: must be a whole number, got 'seventy'" in body
    assert "Traceback" not in r.stderr


def test_validate_reports_bad_yaml_and_missing_file_in_one_line(tmp_path: Path) -> None:
    f = _write(tmp_path / "broken.yaml", "deployments: [\n  - id: a\n")
    r = cli("validate", str(f))
    assert r.returncode == 1
    assert "invalid YAML" in r.stderr and "line " in r.stderr
    r = cli("validate", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1
    assert "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_env_substitution_fills_values_and_names_missing_variables(
    tmp_path: Path, endpoint: Endpoint
) -> None:
    f = _write(
        tmp_path / "env.yaml",
        """
deployments:
  - id: api
    url: ${API_URL}
    check_interval: ${INTERVAL:-15}
server:
  port: ${PORT}
  token: ${MONITOR_TOKEN}
""",
    )
    ok = cli("validate", str(f), API_URL=endpoint.url, PORT="9123", MONITOR_TOKEN="t0ps3cret")
    assert ok.returncode == 0, ok.stderr
    assert "server 127.0.0.1:9123" in ok.stdout
    assert "t0ps3cret" not in ok.stdout + ok.stderr

    bad = cli("validate", str(f), API_URL=endpoint.url, PORT="9123")
    assert bad.returncode == 1
    assert "server.token: environment variable MONITOR_TOKEN is not set" in bad.stderr


def test_run_with_a_bad_file_starts_nothing(tmp_path: Path) -> None:
    f = _write(tmp_path / "bad.yaml", "deployments:\n  - id: a\n    url: nope\n")
    r = cli("run", "-c", str(f), timeout=30)
    assert r.returncode == 1
    assert "deployments[0].url: must be an http:// or https:// URL" in r.stderr
    assert not (tmp_path / "crackseg-monitor.db").exists()


def test_resources_reports_the_machine_as_json() -> None:
    r = cli("resources", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["memory_usage_mb"] > 0 and 0 <= data["cpu_usage_percent"] <= 100 * 64


def test_resources_of_a_missing_process_is_one_line() -> None:
    r = cli("resources", "--process", "no-such-process-xyz")
    assert r.returncode == 1
    assert r.stderr.startswith("error: process 'no-such-process-xyz' is not running")
    assert len(r.stderr.strip().splitlines()) == 1
