"""``crackseg-monitor demo`` (``make run``) as a newcomer meets it: a real subprocess on a free
port, its sample services, real rollouts through nginx, its page rendered by Chromium at
desktop and phone widths, and Ctrl-C."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import orjson
import psutil
import pytest

from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests.support.chromium import run_chromium
from tests.support.demo import CLI, ROOT, Demo, start_demo, stop_demo
from tests.support.wait import free_port, wait_until

SHOTS = ROOT / "docs" / "screenshots"
SAMPLES = {"healthy", "slow", "degraded", "flapping", "down"}


@pytest.fixture(scope="module")
def demo(nginx_bin: str) -> Iterator[Demo]:
    d = start_demo("--port", str(free_port()))
    try:
        d.url = d.wait_for(r"status page: (http://127\.0\.0\.1:\d+)/", 60).group(1)
        yield d
    finally:
        if d.proc.poll() is None:
            stop_demo(d)


def test_the_demo_introduces_itself_and_serves_health_in_the_spec_format(demo: Demo) -> None:
    out = demo.output()
    assert "5 sample deployments (healthy, slow, degraded, flapping, down)" in out
    assert f"{CLI.relative_to(ROOT)} status" in out  # the command, with the path to type
    assert "Ctrl-C stops everything" in out
    checker = DefaultHealthChecker()
    try:
        result = checker.check_health(demo.url + "/health", 5)  # the spec's own call
        assert result.success and result.status == "healthy", result.error_message
        assert checker.wait_for_healthy(demo.url + "/health", max_wait=10)
    finally:
        checker.close()
    st = subprocess.run(
        [str(CLI), "status", "--url", demo.url, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert st.returncode == 0, st.stderr
    rows = {r["deployment_id"]: r for r in orjson.loads(st.stdout)["deployments"]}
    assert set(rows) >= SAMPLES


def test_rollouts_tell_their_story_and_the_machine_is_not_a_deployment(demo: Demo) -> None:
    demo.wait_for(r"rollout 3/3: v3 rolled back after \d+s: .*error rate", 120)
    records = demo.get("/api/v1/rollouts")["rollouts"]
    story = [(r["version"], r["strategy"], r["state"]) for r in reversed(records)]
    assert story[-3:] == [
        ("v1", "blue_green", "success"),
        ("v2", "blue_green", "success"),
        ("v3", "canary", "rolled_back"),
    ]
    assert "error rate" in (records[0].get("rollback_reason") or "")
    body = demo.get("/api/v1/deployments")
    rows = {r["deployment_id"]: r for r in body["deployments"]}
    assert body["host"] is not None and body["host"]["memory_usage_mb"] > 0
    healthy = rows["healthy"]["resource_metrics"]
    assert healthy["process_name"] == "demo-healthy" and len(healthy["pids"]) == 1
    assert psutil.Process(healthy["pids"][0]).name() == "demo-healthy"
    assert demo.proc.pid not in healthy["pids"]  # never the monitor itself
    for name in ("slow", "degraded", "flapping", "down"):
        assert rows[name]["resource_metrics"] is None, name  # no process: empty, not the host's
    assert rows["degraded"]["uptime_24h_percent"] == 100.0  # degraded still counts as up
    assert rows["down"]["uptime_24h_percent"] == 0.0


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, str] = {}
        self.records: dict[str, str] = {}
        self.host = ""
        self.loaded = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body" and a.get("data-loaded") == "true":
            self.loaded = True
        if tag == "section" and a.get("id") == "host":
            self.host = a.get("data-host") or ""
        if tag == "tr" and a.get("data-deployment-id"):
            self.rows[a["data-deployment-id"] or ""] = a.get("data-status") or ""
        if tag == "tr" and a.get("data-record-id"):
            self.records[a.get("data-version") or ""] = a.get("data-state") or ""


@pytest.mark.parametrize(("width", "height"), [(1400, 1900), (390, 2600)], ids=["desktop", "phone"])
def test_the_page_renders_rows_host_and_rollouts_at_desktop_and_phone_widths(
    demo: Demo, tmp_path: Path, width: int, height: int, chromium_bin: str
) -> None:
    binary = chromium_bin
    demo.wait_for(r"rollout 3/3: v3 rolled back", 120)
    size = (width, height)
    dom = run_chromium(binary, tmp_path / "p1", demo.url + "/", "--dump-dom", size=size).decode()
    page = _Page()
    page.feed(dom)
    assert page.loaded, "the page never finished loading the API"
    assert set(page.rows) >= SAMPLES
    assert page.rows["down"] == "unhealthy" and page.rows["degraded"] == "degraded"
    assert page.rows["slow"] == "healthy"
    assert page.records.get("v1") == "success" and page.records.get("v2") == "success"
    assert page.records.get("v3") == "rolled_back"
    assert page.host == "true"
    assert "error rate" in dom  # the canary's rollback reason is on the page
    shot = tmp_path / "shot.png"
    run_chromium(binary, tmp_path / "p2", demo.url + "/", f"--screenshot={shot}", size=size)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    # The pictures in docs/ change only on request: a test run must not dirty the tree of
    # whoever runs it (CRACKSEG_UPDATE_SCREENSHOTS=1 refreshes them).
    if os.environ.get("CRACKSEG_UPDATE_SCREENSHOTS") == "1":
        name = "demo_desktop.png" if width > 600 else "demo_phone.png"
        SHOTS.mkdir(parents=True, exist_ok=True)
        tmp = SHOTS / f".{name}.{os.getpid()}.tmp"
        shutil.copyfile(shot, tmp)
        os.replace(tmp, SHOTS / name)


def test_ctrl_c_stops_everything_it_started(demo: Demo) -> None:
    rows = {r["deployment_id"]: r for r in demo.get("/api/v1/deployments")["deployments"]}
    children = psutil.Process(demo.proc.pid).children(recursive=True)
    assert children  # the healthy service, the rollout instances, nginx
    assert rows["healthy"]["resource_metrics"]["pids"][0] in {c.pid for c in children}
    assert stop_demo(demo) == 0
    assert "demo: stopped" in demo.output()
    gone = wait_until(lambda: not any(c.is_running() for c in children), 15, "children to exit")
    assert gone


def test_a_busy_port_gets_one_line_naming_the_flag() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        out = subprocess.run(
            [str(CLI), "demo", "--port", str(port), "--duration", "20"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "--port" in errors[0] and str(port) in errors[0], out.stderr
    assert time.monotonic() - t0 < 20  # it says so at once, not after running


def test_without_nginx_it_says_how_to_install_it_and_still_monitors(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = os.pathsep.join(
        p
        for p in os.environ.get("PATH", "").split(os.pathsep)
        if p and not Path(p, "nginx").exists()
    )
    env = {**os.environ, "PATH": path}
    d = start_demo("--port", "0", "--duration", "8", env=env)
    try:
        d.url = d.wait_for(r"status page: (http://127\.0\.0\.1:\d+)/", 60).group(1)
        d.wait_for(r"nginx is not installed.*apt-get install nginx-light", 10)
        wait_until(lambda: d.get("/api/v1/deployments")["count"] == 5, 20, "the five samples")
    finally:
        assert stop_demo(d) == 0
    assert "rollout 1/3" not in d.output()
