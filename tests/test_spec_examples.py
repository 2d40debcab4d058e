"""Every example of the spec runs as written (examples/), against real servers on localhost.

The spec's examples name ``localhost:8080`` and ``localhost:8081``. The suite never binds a
fixed port (a demo or anything else may hold it), so each example runs from a copy in which
those two addresses name free ports where the test servers listen; nothing else changes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.support.monitor_servers import LiveServer
from tests.support.wait import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


_PORTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def spec_servers() -> Iterator[tuple[LiveServer, LiveServer]]:
    # What the spec's localhost:8080 and :8081 stand for, on free ports.
    with LiveServer("localhost", free_port()) as a, LiveServer("localhost", free_port()) as b:
        b.set("/health", status=503, body='{"status": "degraded", "issues": ["cache_down"]}')
        _PORTS.update({"localhost:8080": a.port, "localhost:8081": b.port})
        yield a, b
        _PORTS.clear()


def _spec_url(text: str) -> str:
    # One pass, whole port numbers only: a free port may itself start with 8081.
    return re.sub(
        r"localhost:(8080|8081)\b",
        lambda m: f"localhost:{_PORTS.get(m.group(0), m.group(1))}",
        text,
    )


def run_example(name: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="spec-example-") as tmp:
        copy = Path(tmp) / name
        copy.write_text(_spec_url((EXAMPLES / name).read_text()))
        proc = subprocess.run(
            [sys.executable, str(copy), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_standalone_quick_start(spec_servers: tuple[LiveServer, LiveServer]) -> None:
    out = run_example("quick_start_standalone.py")
    assert "web-service: unknown" in out or "web-service: healthy" in out
    assert "web-service: healthy" in out
    assert "api-service: degraded" in out


def test_orchestrator_quick_start(spec_servers: tuple[LiveServer, LiveServer]) -> None:
    out = run_example("quick_start_orchestrator.py")
    assert "Health: " in out


def test_health_checker(spec_servers: tuple[LiveServer, LiveServer]) -> None:
    out = run_example("health_checker.py")
    assert "Healthy - Response time: " in out
    assert "Service is healthy" in out


def test_resource_monitor(spec_servers: tuple[LiveServer, LiveServer]) -> None:
    out = run_example("resource_monitor.py")
    for label in ("CPU:", "Memory:", "Disk:", "Network:", "Process CPU:", "Process Memory:"):
        assert label in out


def test_custom_implementations() -> None:
    assert "custom monitor ready: CustomHealthChecker" in run_example("custom_implementations.py")


def test_configuration(spec_servers: tuple[LiveServer, LiveServer]) -> None:
    out = run_example("configuration.py")
    assert "'cpu_usage_percent': 80.0" in out and "'response_time_ms': 200.0" in out
    assert "'critical-service': 10" in out and "'background-service': 60" in out


def test_data_export(spec_servers: tuple[LiveServer, LiveServer], tmp_path: Path) -> None:
    target = tmp_path / "outputs" / "monitoring_data.json"
    run_example("data_export.py", str(target))
    data = orjson.loads(target.read_bytes())
    dep = data["monitored_deployments"]["deployment-123"]
    assert dep["health_check_url"] == _spec_url("http://localhost:8080/health")
    assert dep["process_name"] == "my-service" and dep["check_interval"] == 30
    assert dep["health_history"][0]["status"] == "healthy"
    assert dep["health_history"][0]["success"] is True


def test_troubleshooting(spec_servers: tuple[LiveServer, LiveServer]) -> None:
    out = run_example("troubleshooting.py")
    assert "Status: 200" in out
    assert "Monitoring active: False" in out
    assert "Monitored deployments: 0" in out
    assert "debug-service: healthy" in out


def test_automatic_monitoring_after_a_blue_green_deploy() -> None:
    out = run_example("automatic_monitoring.py")
    assert "Deployment health: " in out
    assert "monitored: ['crackseg-model-" in out


def test_custom_alert_handler_receives_alerts() -> None:
    out = run_example("custom_alert_handler.py")
    assert "Alert: health_check_failed for down-service" in out


def test_complete_monitoring_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_SECONDS", "2")
    out = run_example("complete_setup.py")
    for dep in ("web-frontend", "api-backend", "model-service"):
        # these hosts do not resolve here: a DNS failure reads as unhealthy, never a crash
        assert f"{dep}: unhealthy" in out
