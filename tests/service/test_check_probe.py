"""``crackseg-monitor check`` as the README's Docker HEALTHCHECK and Kubernetes exec probe run
it: the exact lines, through ``sh -c`` (Docker's CMD form) or exec'd (Kubernetes), exit status
read as they read it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.service_helpers import ROOT, Endpoint, env

README = (ROOT / "README.md").read_text()
# This checkout's own CLI, never one first on PATH (another checkout's, a pipx install).
EXE = str(Path(sys.executable).with_name("crackseg-monitor"))
DOCUMENTED = "http://127.0.0.1:8080/health"


def _healthcheck(url: str) -> str:
    (line,) = re.findall(r"^HEALTHCHECK .* CMD (.*)$", README, flags=re.M)
    return line.replace("crackseg-monitor", EXE, 1).replace(DOCUMENTED, url)


def _probe(url: str) -> list[str]:
    (block,) = re.findall(r"^```yaml\n(livenessProbe:.*?)^```", README, flags=re.M | re.S)
    command = yaml.safe_load(block)["livenessProbe"]["exec"]["command"]
    return [EXE if c == "crackseg-monitor" else url if c == DOCUMENTED else c for c in command]


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/health"


def test_the_documented_probes_exit_as_docker_and_kubernetes_read_them() -> None:
    endpoint = Endpoint()
    try:
        cases = [
            (200, {"status": "healthy"}, 0),
            (503, {"status": "degraded"}, 0),  # --degraded-ok is the default
            (500, {"status": "unhealthy"}, 1),
        ]
        for status, body, expected in cases:
            endpoint.status, endpoint.body = status, body
            docker = subprocess.run(["sh", "-c", _healthcheck(endpoint.url)], env=env(),
                                    capture_output=True, text=True, timeout=30)  # fmt: skip
            assert docker.returncode == expected, (body, docker.stdout, docker.stderr)
            kube = subprocess.run(_probe(endpoint.url), env=env(), capture_output=True,
                                  text=True, timeout=30)  # fmt: skip
            assert kube.returncode == expected, (body, kube.stdout, kube.stderr)
        down = subprocess.run(["sh", "-c", _healthcheck(_closed_url())], env=env(),
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert down.returncode == 1 and "Traceback" not in down.stderr
    finally:
        endpoint.close()


def test_a_usage_error_is_not_a_health_answer() -> None:
    r = subprocess.run([EXE, "check"], env=env(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2  # typer's usage error, never printed as unhealthy
    r = subprocess.run([EXE, "check", DOCUMENTED, "--timeout", "-1"], env=env(),
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 2
