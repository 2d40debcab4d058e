"""kill -9 of a program in the middle of a canary onto SSH hosts: the next orchestrator on
its store, with the same SSH target, stops the new version on its host and takes over the
previous one, which it stops later.

A real sshd plays 127.0.0.2 and 127.0.0.3 (on this machine, so a remote PID is visible here
too); the program is a real script using the library with a SQLite store, real nginx and
sample services started over ssh; it is SIGKILLed with the canary at 25 %.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.history.sqlite.rollouts import RolloutStateStore
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.orchestration import DeploymentConfig, DeploymentOrchestrator
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.ssh import SSHTarget
from tests.support.rollout_state import wait_for_canary_weight
from tests.support.sshd import SSHServer, ssh_hosts
from tests.support.wait import wait_until

SAMPLE = [sys.executable, "-m", "crackseg.utils.deployment.service.sample_service"]
COMMAND = [*SAMPLE, "--host", "{host}", "--port", "{port}", "--version", "{version}"]
SECRET = "s3cr3t-ssh-value"
HOSTS = ("127.0.0.2", "127.0.0.3")

SCRIPT = """
import json, sys
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.orchestration import DeploymentConfig, DeploymentOrchestrator
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.ssh import SSHHost, SSHTarget

db, workdir, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
router = NginxRouter(workdir=workdir, worker_shutdown_timeout="2s")
target = SSHTarget(
    spec["command"], [SSHHost(**h) for h in spec["hosts"]], log_dir=spec["log_dir"],
    env={"CRACKSEG_TEST_SECRET": spec["secret"]}, default_grace_period=3.0,
)
orch = DeploymentOrchestrator(store=SQLiteStore(db), router=router, target=target)
common = dict(check_interval=0.1, success_threshold=1, guard_seconds=0, monitor_interval=5)
v1 = orch.deploy_with_strategy(
    DeploymentConfig("m", "prod", version="v1", bake_seconds=0.2, **common), "blue_green"
)
if not v1.success:
    sys.exit(f"v1 failed: {v1.error_message}")
print(json.dumps({"port": router.listen_port, "nginx": router.pid}), flush=True)
orch.deploy_with_strategy(
    DeploymentConfig("m", "prod", version="v2", deployment_id="dep-crash", bake_seconds=120,
                     canary_steps=[25, 100], **common),
    "canary",
)
"""


@dataclass
class Crash:
    """What the killed program left: its nginx, and the recorded remote processes."""

    db: Path
    workdir: Path
    log_dir: Path
    port: int
    v1: dict[str, Any]  # the recorded previous instance
    v2: dict[str, Any]  # the recorded canary instance


@contextlib.contextmanager
def crashed_mid_canary(tmp_path: Path, sshd: SSHServer) -> Iterator[Crash]:
    """Runs the script until its canary is at 25 %, SIGKILLs it, yields what it left; at
    exit kills whatever of it still runs (its nginx, remote services, ssh clients)."""
    db, workdir, logs = tmp_path / "h.db", tmp_path / "nginx", tmp_path / "remote-logs"
    known = sshd.known_hosts(*HOSTS)
    spec = {
        "command": COMMAND,
        "hosts": [
            {k: v for k, v in asdict(h).items() if k != "env"}
            for h in ssh_hosts(sshd, known, *HOSTS)
        ],
        "log_dir": str(logs),
        "secret": SECRET,
    }
    script = tmp_path / "deploy.py"
    script.write_text(textwrap.dedent(SCRIPT))
    # Its ssh clients (the shared connections outlive it: ControlPersist) keep their
    # sockets under this folder, which names them for the cleanup; short, as a socket's
    # path must be.
    own_tmp = Path(tempfile.mkdtemp(prefix="cs-crash-"))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(workdir), json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "script.log").open("wb"),
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "TMPDIR": str(own_tmp)},
    )
    info: dict[str, Any] = {}
    row: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline() or "{}")
        assert info, (tmp_path / "script.log").read_text()[-2000:]
        row = wait_for_canary_weight(db, "dep-crash", 25, 40.0)
        proc.kill()  # kill -9: no cleanup of any kind
        proc.wait(10)
        (v2,) = row["new_instances"]
        (v1,) = row["previous"]["instances"]
        yield Crash(db, workdir, logs, info["port"], v1, v2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for recorded in [
            *row.get("new_instances", []),
            *(row.get("previous") or {}).get("instances", []),
        ]:
            _kill_group((recorded.get("extra") or {}).get("remote_pid"), SAMPLE[-1])
        _kill_group(info.get("nginx"), "nginx")
        for p in psutil.process_iter(["pid", "cmdline"]):
            if any(str(own_tmp) in a for a in p.info["cmdline"] or ()):
                with contextlib.suppress(psutil.Error):
                    p.kill()
        shutil.rmtree(own_tmp, ignore_errors=True)


def cfg(version: str) -> DeploymentConfig:
    return DeploymentConfig(
        "m", "prod", version=version, check_interval=0.1, success_threshold=1,
        bake_seconds=0.2, keep_old_seconds=0.0, guard_seconds=0, grace_period=3.0,
    )  # fmt: skip


def recovering_target(sshd: SSHServer, log_dir: Path, *names: str) -> SSHTarget:
    """A fresh SSH target configured as the killed program's was (or with fewer hosts)."""
    known = sshd.known_hosts(*names)
    return SSHTarget(
        COMMAND, ssh_hosts(sshd, known, *names), log_dir=str(log_dir), default_grace_period=3.0
    )


@pytest.mark.parametrize("replaced_by", ["next deployment", "stop_adopted"])
def test_kill_9_mid_canary_on_ssh_hosts_is_undone_on_the_hosts(
    tmp_path: Path, sshd: SSHServer, nginx_bin: str, replaced_by: str
) -> None:
    with crashed_mid_canary(tmp_path, sshd) as crash:
        v1_pid, v2_pid = crash.v1["extra"]["remote_pid"], crash.v2["extra"]["remote_pid"]
        # The record holds what finds each instance again on its host, and no PID here.
        assert crash.v2["pid"] is None and crash.v2["extra"]["ssh_host"].endswith(f":{sshd.port}")
        assert _running(v2_pid) and _running(v1_pid)
        monitor = DeploymentHealthMonitor(store=SQLiteStore(crash.db))
        target = recovering_target(sshd, crash.log_dir, *HOSTS)
        try:
            with (
                NginxRouter(workdir=crash.workdir, worker_shutdown_timeout="2s") as router,
                DeploymentOrchestrator(monitor, router=router, target=target) as orch,
            ):
                assert router.adopted and router.listen_port == crash.port
                assert [m.deployment_id for m in orch.recovered] == ["dep-crash"]
                record = orch.get_deployment_status("dep-crash")
                assert record is not None and record.state == "rolled_back"
                assert (record.rollback_reason or "").startswith("interrupted")
                assert "left_running" not in record.extra, record.extra["left_running"]
                # The canary's process is gone from its host; nginx serves only v1.
                assert not _running(v2_pid)
                assert router.sample_versions("/version", 20) == {"v1": 20}
                assert RolloutStateStore(crash.db).interrupted() == []
                adopted = orch._env("prod").current
                assert adopted is not None and adopted.version == "v1"
                # Alive as its host says, not "unknowable": the answer changes once it stops.
                (v1,) = adopted.instances  # a replaced release drops its stopped instances
                assert adopted.launcher.is_alive(v1)
                if replaced_by == "next deployment":
                    v3 = orch.deploy_with_strategy(cfg("v3"))
                    assert v3.success, v3.error_message
                    assert router.sample_versions("/version", 10) == {"v3": 10}
                    wait_until(lambda: not _running(v1_pid), 15.0, "v1 stopped on its host")
                else:
                    assert orch.stop_adopted(grace=3.0) == 1
                    assert not _running(v1_pid)
                assert not adopted.launcher.is_alive(v1)
        finally:
            target.close()
            monitor.close()
        # Secrets of the target's environment never reach the store.
        for path in crash.db.parent.glob(f"{crash.db.name}*"):
            assert SECRET.encode() not in path.read_bytes(), path


def test_an_instance_on_a_host_no_longer_configured_is_left_running_and_the_record_says_why(
    tmp_path: Path, sshd: SSHServer, nginx_bin: str
) -> None:
    with crashed_mid_canary(tmp_path, sshd) as crash:
        v2_host = crash.v2["extra"]["ssh_host"]
        v1_host = crash.v1["extra"]["ssh_host"]
        assert v1_host != v2_host  # the canary went to the idle host
        kept = next(h for h in HOSTS if f"@{h}:" in v1_host)
        monitor = DeploymentHealthMonitor(store=SQLiteStore(crash.db))
        target = recovering_target(sshd, crash.log_dir, kept)
        try:
            with (
                NginxRouter(workdir=crash.workdir, worker_shutdown_timeout="2s") as router,
                DeploymentOrchestrator(monitor, router=router, target=target) as orch,
            ):
                record = orch.get_deployment_status("dep-crash")
                assert record is not None and record.state == "rolled_back"
                (left,) = record.extra["left_running"]
                assert left["address"] == crash.v2["address"]
                assert v2_host in left["why"] and "not one of this target's hosts" in left["why"]
                assert _running(crash.v2["extra"]["remote_pid"])  # nobody could stop it
                assert router.sample_versions("/version", 10) == {"v1": 10}
        finally:
            target.close()
            monitor.close()


def _kill_group(pid: int | None, name: str) -> None:
    """SIGKILL the process group of ``pid`` if it is still the process this test started."""
    if not pid:
        return
    with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
        if name in " ".join(psutil.Process(pid).cmdline()):
            os.killpg(pid, signal.SIGKILL)


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
