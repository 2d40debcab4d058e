"""kill -9 of a program in the middle of a canary: the next orchestrator on its store undoes it.

The program is a real script using the library with a SQLite store, real nginx and
sample-service processes; it is SIGKILLed with the canary at 25 %.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.history.sqlite.rollouts import RolloutStateStore
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.orchestration import DeploymentConfig, DeploymentOrchestrator
from crackseg.utils.deployment.rollout.recovery import instance_state
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.base import Instance
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
from tests.support.rollout_state import wait_for_canary_weight
from tests.support.wait import wait_until

SCRIPT = """
import json, sys
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.orchestration import DeploymentConfig, DeploymentOrchestrator
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget

db, workdir, logs = sys.argv[1:4]
router = NginxRouter(workdir=workdir, worker_shutdown_timeout="2s")
target = ProcessTarget.for_sample_service(log_dir=logs)
orch = DeploymentOrchestrator(store=SQLiteStore(db), router=router, target=target)
common = dict(check_interval=0.1, success_threshold=1, guard_seconds=0, monitor_interval=5)
v1 = orch.deploy_with_strategy(
    DeploymentConfig("m", "prod", version="v1", bake_seconds=0.2, **common), "blue_green"
)
pid = orch.get_deployment_status(v1.deployment_id).extra["instances"][0]["pid"]
print(json.dumps({"port": router.listen_port, "nginx": router.pid, "v1": pid}), flush=True)
orch.deploy_with_strategy(
    DeploymentConfig("m", "prod", version="v2", deployment_id="dep-crash", bake_seconds=120,
                     canary_steps=[25, 100], **common),
    "canary",
)
"""


class Collect(AlertHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def send_alert(self, alert_type: str, metadata: Any, **kw: Any) -> bool:
        self.events.append((alert_type, str(kw.get("message", ""))))
        return True


def _kill_group(pid: int | None) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def test_kill_9_mid_canary_is_rolled_back_by_the_next_start(tmp_path: Path, nginx_bin: str) -> None:
    db, workdir, logs = tmp_path / "h.db", tmp_path / "nginx", tmp_path / "logs"
    script = tmp_path / "deploy.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(workdir), str(logs)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "script.log").open("wb"),
        cwd=Path(__file__).resolve().parents[2],
    )
    info: dict[str, Any] = {}
    v2_pid = None
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline() or "{}")
        assert info, (tmp_path / "script.log").read_text()[-2000:]
        row = wait_for_canary_weight(db, "dep-crash", 25, 30.0)
        v2_pid = row["new_instances"][0]["pid"]
        proc.kill()  # kill -9: no cleanup of any kind
        proc.wait(10)
        handler = Collect()
        monitor = DeploymentHealthMonitor(store=SQLiteStore(db))
        monitor.add_alert_handler(handler)
        target = ProcessTarget.for_sample_service(log_dir=logs)
        with (
            NginxRouter(workdir=workdir, worker_shutdown_timeout="2s") as router,
            DeploymentOrchestrator(monitor, router=router, target=target) as orch,
        ):
            assert router.adopted and router.listen_port == info["port"]
            assert [m.deployment_id for m in orch.recovered] == ["dep-crash"]
            record = orch.get_deployment_status("dep-crash")
            assert record is not None and record.state == "rolled_back"
            assert (record.rollback_reason or "").startswith("interrupted")
            # nginx serves only the previous version; the new one's process is gone.
            assert router.sample_versions("/version", 20) == {"v1": 20}
            assert not _running(v2_pid)
            wait_until(
                lambda: (
                    {"rollback_triggered", "rollback_completed"} <= {t for t, _ in handler.events}
                ),
                10.0,
                "the rollback events",
            )
            assert RolloutStateStore(db).interrupted() == []
            # v1 is this orchestrator's to replace now: the next deployment stops it by PID.
            assert orch.get_environment("prod")["current"]["version"] == "v1"
            v3 = orch.deploy_with_strategy(
                DeploymentConfig(
                    "m",
                    "prod",
                    version="v3",
                    check_interval=0.1,
                    success_threshold=1,
                    bake_seconds=0.2,
                    keep_old_seconds=0.0,
                    guard_seconds=0,
                ),
                "blue_green",
            )
            assert v3.success, v3.error_message
            assert router.sample_versions("/version", 10) == {"v3": 10}
            wait_until(lambda: not _running(info["v1"]), 10.0, "v1 stopped by its PID")
        target.close()
        monitor.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_group(info.get("v1"))
        _kill_group(v2_pid)
        _kill_group(info.get("nginx"))


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_the_record_keeps_what_finds_an_instance_again_and_no_secret() -> None:
    inst = Instance(
        "canary-v2-1",
        "v2",
        "127.0.0.2",
        8080,
        extra={
            "ssh_host": "deploy@127.0.0.2:22",
            "remote_pid": 4242,
            "remote_start_time": 123456,
            "api_token": "tok-very-secret",
            "url": "http://user:pa55word@127.0.0.2:8080",
            "connection": object(),  # a target's own object: not for the state file
        },
    )
    state = instance_state(inst)
    assert state["pid"] is None
    extra = state["extra"]
    assert {k: extra[k] for k in ("ssh_host", "remote_pid", "remote_start_time")} == {
        "ssh_host": "deploy@127.0.0.2:22",
        "remote_pid": 4242,
        "remote_start_time": 123456,
    }
    assert "api_token" not in extra and "connection" not in extra
    assert "pa55word" not in json.dumps(state) and "127.0.0.2:8080" in extra["url"]
