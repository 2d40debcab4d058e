"""Rollouts through the running service's API: ``crackseg-monitor run`` with a ``deploy``
section, real nginx, real sample-service processes, steady load through nginx.

Started, streamed (server-sent events, resumed with ``Last-Event-ID``), refused with 409
while one runs, aborted, rolled back, and undone after a ``kill -9`` of the service in the
middle of a canary; the CLI's ``deploy`` and ``rollback`` as clients of that API.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from crackseg.utils.deployment.service.cli.deploy import follow_events
from tests.support.runtime import LoadGenerator
from tests.support.service_helpers import Running, cli

TOKEN = "rollout-token-3f9a"


def _config(tmp_path: Path, *, bake: float = 0.5, strategy: str = "blue_green") -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        f"""
store: {{path: {tmp_path / "history.db"}, flush_interval: 0.2}}
server: {{port: 0, token: {TOKEN}}}
deploy:
  name: crackseg-model
  environment: production
  strategy: {strategy}
  version: v1
  target:
    command: [{sys.executable}, -m, crackseg.utils.deployment.service.sample_service,
              --host, "{{host}}", --port, "{{port}}", --version, "{{version}}"]
    grace_period: 1
    log_dir: {tmp_path / "logs"}
    version_args: {{bad: [--fail-health]}}
  router: {{type: nginx, listen_port: 0}}
  rollout:
    check_interval: 0.2
    success_threshold: 2
    failure_threshold: 2
    health_timeout: 20
    bake_seconds: {bake}
    min_samples: 1
    keep_old_seconds: 0
    grace_period: 1
    canary_steps: [25, 100]
"""
    )
    return path


def _call(
    base: str, path: str, method: str = "GET", body: Any = None, token: str | None = TOKEN
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, dict(exc.headers), json.loads(raw) if raw else None


def _start(base: str, version: str, **extra: Any) -> dict[str, Any]:
    status, headers, body = _call(base, "/api/v1/rollouts", "POST", {"version": version, **extra})
    assert status == 202, body
    assert headers["Location"] == body["location"] == f"/api/v1/rollouts/{body['id']}"
    return dict(body)


def _events(base: str, accepted: dict[str, Any], timeout: float = 120) -> list[tuple[str, Any]]:
    deadline = time.monotonic() + timeout
    return list(follow_events(base, accepted["events"], TOKEN, deadline))


def _version_at(url: str) -> str:
    with urllib.request.urlopen(f"{url}/version", timeout=5) as resp:
        return str(json.loads(resp.read())["version"])


def _running(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``procs`` still running after up to ``timeout`` seconds (zombies are gone)."""

    def alive(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + timeout
    while any(map(alive, procs)) and time.monotonic() < deadline:
        psutil.wait_procs([p for p in procs if alive(p)], timeout=0.2)
    return [p for p in procs if alive(p)]


def _assert_none_left(procs: list[psutil.Process], after: str) -> None:
    """Every process of ``procs`` ends within 10 s; else they are killed (never leaked into
    the next test) and the test fails naming them."""
    left = _running(procs, 10.0)
    named = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            named.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            proc.kill()
    assert not left, f"still running {after}: {named}"


@contextlib.contextmanager
def _service(cfg: Path) -> Iterator[Running]:
    """The service, stopped at the end: nothing it started (instances, nginx) may outlive
    its stop. After a kill -9 what it left is the next start's to take over and stop."""
    svc = Running("run", "-c", str(cfg))
    ours: list[psutil.Process] = []
    try:
        yield svc
    finally:
        with contextlib.suppress(psutil.Error):  # gone already when the test killed it
            ours = psutil.Process(svc.proc.pid).children(recursive=True)
        svc.stop()
    _assert_none_left(ours, "after the service stopped")


def test_a_rollout_started_streamed_refused_and_rolled_back_under_load(
    tmp_path: Path, nginx_bin: str
) -> None:
    cfg = _config(tmp_path, bake=4.0, strategy="canary")
    with _service(cfg) as svc:
        base = svc.url()
        status, _, body = _call(base, "/api/v1/rollouts", "POST", {"version": "v1"}, token=None)
        assert status == 401, body  # writes need the token
        status, _, body = _call(base, "/api/v1/rollouts", "POST", {"version": "v 1"})
        assert status == 400 and body["field"] == "version", body
        status, _, body = _call(base, "/api/v1/rollouts", "POST", {"options": {"nope": 1}})
        assert status == 400 and body["field"] == "options.nope", body

        first = _start(base, "v1", options={"bake_seconds": 0.3})
        done = _events(base, first)[-1]
        assert done[0] == "done" and done[1]["success"], done
        url = done[1]["serving_at"]
        assert _version_at(url) == "v1"

        with LoadGenerator(url + "/predict", rate=50, concurrency=4, max_duration=120) as load:
            load.wait_for_requests(20)
            # This test is about the API (start, stream, 409, resume, rollback), not the judge:
            # 4 s bakes hold too few canary requests for evidence of safety, and the default
            # fails closed (tests/rollout/test_judged_rollouts.py proves the judge itself).
            second = _start(base, "v2", options={"on_inconclusive": "proceed"})
            # One rollout at a time: refused at once, naming the one in progress.
            status, headers, body = _call(base, "/api/v1/rollouts", "POST", {"version": "v3"})
            assert status == 409, body
            assert second["id"] in body["detail"] and "deploy v2" in body["detail"], body
            assert headers["Location"] == second["location"]
            events = _events(base, second)
            load.wait_for_requests(20)
        kinds = [k for k, _ in events]
        assert kinds[0] == "started" and kinds[-1] == "done", kinds
        assert "progress" in kinds and "step" in kinds and "state" in kinds, kinds
        assert events[-1][1]["success"], events[-1]
        assert load.result.failed == 0, load.result.failures[:5]
        assert _version_at(url) == "v2"

        # The stream is resumable from a given event: nothing before it is sent again.
        req = urllib.request.Request(base + second["events"], headers={"Last-Event-ID": "2"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            ids = [int(x[3:]) for x in resp.read().decode().splitlines() if x.startswith("id:")]
        assert ids == list(range(3, len(events) + 1)), ids

        status, _, story = _call(base, second["location"])
        assert status == 200 and story["id"] == second["id"], story
        assert story["record"]["state"] == "success" and story["record"]["version"] == "v2"
        assert story["steps"] and story["weights"] and story["run"]["outcome"]["success"]
        assert TOKEN not in json.dumps(story)

        status, _, listing = _call(base, "/api/v1/rollouts")
        assert [r["version"] for r in listing["rollouts"]][:2] == ["v2", "v1"]
        old = urllib.request.Request(base + "/api/v1/deploys?limit=1", method="GET")
        with contextlib.suppress(urllib.error.HTTPError):
            opener = urllib.request.build_opener(_NoRedirect)
            opener.open(old, timeout=10)
        assert _NoRedirect.last == (308, "/api/v1/rollouts?limit=1")

        rb = _call(base, "/api/v1/environments/production/rollback", "POST", {})
        assert rb[0] == 202, rb
        done = _events(base, rb[2])[-1]
        assert done[1]["success"], done
        assert _version_at(url) == "v1"
        status, _, body = _call(base, "/api/v1/environments/staging/rollback", "POST", {})
        assert status == 404 and body["field"] == "env"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    last: tuple[int, str] | None = None

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:  # fmt: skip
        _NoRedirect.last = (code, headers["Location"])
        return None


def test_abort_rolls_the_running_rollout_back(tmp_path: Path, nginx_bin: str) -> None:
    cfg = _config(tmp_path, bake=60.0)
    with _service(cfg) as svc:
        base = svc.url()
        done = _events(base, _start(base, "v1", options={"bake_seconds": 0.3}))[-1]
        url = done[1]["serving_at"]
        second = _start(base, "v2")
        deadline = time.monotonic() + 60
        for kind, _data in follow_events(base, second["events"], TOKEN, deadline):
            if kind == "progress":  # baking: abort it now
                status, _, body = _call(base, second["location"] + "/abort", "POST", {})
                assert status == 202, body
            if kind == "done":
                assert not _data["success"] and _data["rolled_back"], _data
                break
        assert _version_at(url) == "v1"
        status, _, body = _call(base, second["location"] + "/abort", "POST", {})
        assert status == 409, body  # it has ended


def test_kill_9_mid_canary_is_rolled_back_at_the_next_start(tmp_path: Path, nginx_bin: str) -> None:
    cfg = _config(tmp_path, bake=120.0, strategy="canary")
    with _service(cfg) as svc:
        base = svc.url()
        done = _events(base, _start(base, "v1", options={"bake_seconds": 0.3}))[-1]
        url = done[1]["serving_at"]
        second = _start(base, "v2")
        deadline = time.monotonic() + 60
        for kind, data in follow_events(base, second["events"], TOKEN, deadline):
            if kind == "progress" and data["label"].startswith("canary"):
                break  # traffic is split: v2 takes its first share
        orphans = psutil.Process(svc.proc.pid).children(recursive=True)
        svc.proc.send_signal(signal.SIGKILL)
        svc.wait(10)
    assert _running(orphans, 0), "the killed service left v1, v2 and nginx running"
    with _service(cfg) as again:
        base = again.url(60)
        status, _, story = _call(base, second["location"])
        assert status == 200 and story["run"] is None, story  # run by the killed process
        record = story["record"]
        assert record["state"] == "rolled_back", record
        assert record["state_history"][-1]["reason"].startswith("interrupted"), record
        assert _version_at(url) == "v1"
    # v1 (taken over, not started by the new service), v2 (stopped by the undoing) and the
    # nginx it adopted: the service that took them over stopped them at its stop.
    _assert_none_left(orphans, "that the killed service left, after the next one stopped")


def test_cli_deploy_and_rollback_are_clients_of_the_service(tmp_path: Path, nginx_bin: str) -> None:
    cfg = _config(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with _service(cfg) as svc:
        base = svc.url()
        auth = ("--url", base, "--token-file", str(token_file))
        r = cli("deploy", *auth, "--version", "v1", timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "state health_checking" in r.stdout and "deployed v1; serving at" in r.stdout
        url = r.stdout.split("serving at ")[1].split()[0]
        r = cli("deploy", "--url", base, "--version", "v2", timeout=120,
                CRACKSEG_MONITOR_TOKEN=TOKEN)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert "  bake: 100% of " in r.stdout  # the bake window, quarter by quarter
        assert _version_at(url) == "v2"
        r = cli("deploy", *auth, "--version", "bad", timeout=120)
        assert r.returncode == 1 and "deploy of bad failed (rolled back)" in r.stdout, r.stdout
        r = cli("rollback", *auth, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "rolled back" in r.stdout and _version_at(url) == "v1"
        r = cli("deploy", "--url", base, "--version", "v3", timeout=60)
        assert r.returncode == 1 and "HTTP 401" in r.stderr, r.stderr
    r = cli("rollback", "--url", base, "--token-file", str(token_file), timeout=60)
    assert r.returncode == 1 and "crackseg-monitor run" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_an_idle_stream_gets_heartbeats_and_a_stop_rolls_the_running_rollout_back(
    tmp_path: Path, nginx_bin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crackseg.utils.deployment.service.app import MonitorService
    from crackseg.utils.deployment.service.config import load_config
    from crackseg.utils.deployment.service.web import rollouts as web_rollouts

    monkeypatch.setattr(web_rollouts, "HEARTBEAT_S", 0.05)  # progress comes once a second
    service = MonitorService(load_config(_config(tmp_path, bake=60.0)), out=io.StringIO())
    runner = threading.Thread(target=service.run, name="service", daemon=True)
    runner.start()
    try:
        assert service.wait_ready(30) and service.url
        base = service.url
        done = _events(base, _start(base, "v1", options={"bake_seconds": 0.3}))[-1]
        url = done[1]["serving_at"]
        second = _start(base, "v2")
        req = urllib.request.Request(base + second["events"])
        seen: set[bytes] = set()
        with urllib.request.urlopen(req, timeout=30) as resp:
            while not {b": heartbeat", b"event: progress"} <= seen:
                seen.add(resp.readline(4096).strip())
    finally:
        service.stop()  # mid-bake: the rollout is aborted and rolled back, then all stops
        runner.join(120)
    assert not runner.is_alive()
    r = cli("history", "-c", str(tmp_path / "monitor.yaml"), "--json")
    states = {d["version"]: d["state"] for d in json.loads(r.stdout)["deployments"]}
    assert states == {"v1": "success", "v2": "rolled_back"}, states
    with pytest.raises(OSError):
        _version_at(url)  # the service's nginx stopped with it
