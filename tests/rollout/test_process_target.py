"""ProcessTarget with real processes: start, substitute, log, graceful stop, forced stop."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from crackseg.utils.deployment.errors import ConfigError, DeploymentError
from crackseg.utils.deployment.processes import free_port
from crackseg.utils.deployment.rollout.targets.base import DeploymentTarget, Instance
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
from tests.support.runtime import http_get, sample_target, start_instance, wait_healthy

# Prints its arguments and two env values, then waits; with IGNORE_TERM it ignores SIGTERM.
_SCRIPT = """
import os, signal, sys, time
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("args", sys.argv[1:], "env", os.environ["SVC_URL"], os.environ.get("EXTRA", "-"),
      "cwd", os.getcwd(), flush=True)
print("ready", flush=True)
time.sleep(120)
"""


def _wait_for_line(path: str | None, text: str, timeout: float = 15.0) -> str:
    assert path is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = Path(path).read_text(errors="replace")
        if text in content:
            return content
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_is_a_deployment_target() -> None:
    assert issubclass(ProcessTarget, DeploymentTarget)


def test_sample_service_deploys_logs_and_stops_gracefully(tmp_path: Path) -> None:
    with sample_target(tmp_path) as target:
        inst = start_instance(target, "v1", "blue")
        assert inst.version == "v1" and inst.environment == "blue" and inst.pid
        assert inst.health_check_url == f"http://127.0.0.1:{inst.port}/health"
        status, headers, _ = http_get(inst.url + "/predict")
        assert status == 200 and headers["X-Version"] == "v1"
        assert target.is_alive(inst) and target.instances() == [inst.instance_id]
        assert Path(inst.log_path or "").parent == tmp_path / "logs"

        target.teardown(inst, grace_period=10)
        assert not target.is_alive(inst)
        assert target.returncode(inst) == 0  # exited by itself on SIGTERM, not killed
        assert not psutil.pid_exists(inst.pid) or psutil.Process(inst.pid).status() == "zombie"
        log = Path(inst.log_path or "").read_text()
        assert "listening on" in log and "stopped" in log
        target.teardown(inst)  # idempotent
        assert target.instances() == []


def test_placeholders_env_cwd_and_extra_args(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    target = ProcessTarget(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            "--port={port}",
            "{host}",
            "{version}",
            "{environment}",
            "{x}",
        ],
        env={"SVC_URL": "http://{host}:{port}/"},
        cwd=workdir,
        log_dir=tmp_path / "logs",
        version_args={"v9": ["--flag-for-v9"]},
        default_grace_period=5,
    )
    with target:
        inst = target.deploy("v9", environment="canary", extra_args=["--more"], env={"EXTRA": "e"})
        log = _wait_for_line(inst.log_path, "\nready\n")
        expected_args = [
            f"--port={inst.port}",
            "127.0.0.1",
            "v9",
            "canary",
            "{x}",
            "--flag-for-v9",
            "--more",
        ]
        assert f"args {expected_args!r}" in log
        assert f"env http://127.0.0.1:{inst.port}/ e" in log
        assert f"cwd {workdir}" in log
        other = target.deploy("v1", port=free_port())
        assert other.port != inst.port and other.instance_id != inst.instance_id
    # close() (via the with block) stopped both
    assert not target.is_alive(inst) and not target.is_alive(other)


def test_sigkill_after_grace_for_a_process_ignoring_sigterm(tmp_path: Path) -> None:
    target = ProcessTarget(
        [sys.executable, "-c", _SCRIPT],
        env={"SVC_URL": "u", "IGNORE_TERM": "1"},
        log_dir=tmp_path,
    )
    with target:
        inst = target.deploy("v1")
        _wait_for_line(inst.log_path, "\nready\n")  # the handler is installed
        start = time.monotonic()
        target.teardown(inst, grace_period=0.5)
        elapsed = time.monotonic() - start
        assert target.returncode(inst) == -signal.SIGKILL
        assert 0.5 <= elapsed < 8.0


def test_teardown_stops_the_whole_process_group(tmp_path: Path) -> None:
    # A shell that starts a grandchild: stopping the instance must not leave the grandchild.
    script = f"{sys.executable} -c 'import time; print(\"child up\", flush=True); time.sleep(120)' & wait"
    target = ProcessTarget(["/bin/sh", "-c", script], log_dir=tmp_path)
    with target:
        inst = target.deploy("v1")
        _wait_for_line(inst.log_path, "\nchild up\n")
        children = psutil.Process(inst.pid).children(recursive=True)
        assert children
        target.teardown(inst, grace_period=5)
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive


def test_unknown_instances_and_bad_commands(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ProcessTarget([])
    with pytest.raises(ConfigError):
        ProcessTarget("x", health_path="health")
    target = ProcessTarget([str(tmp_path / "does-not-exist")], log_dir=tmp_path)
    with pytest.raises(DeploymentError):
        target.deploy("v1")
    stranger = Instance(instance_id="nope", version="v1", host="127.0.0.1", port=1, pid=os.getpid())
    target.teardown(stranger)  # not ours: ignored, and certainly not signalled
    assert not target.is_alive(stranger) and target.returncode(stranger) is None
    target.close()


def test_string_command_is_split_like_a_shell(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -m crackseg.utils.deployment.service.sample_service --port {{port}} --version '{{version}}'"
    with ProcessTarget(cmd, log_dir=tmp_path) as target:
        inst = target.deploy("v5")
        wait_healthy(inst.health_check_url)
        assert http_get(inst.url + "/version")[2] == b'{"version": "v5"}'
