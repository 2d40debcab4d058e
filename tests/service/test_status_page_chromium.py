"""Headless Chromium (Debian ``chromium``) renders the status page of a running monitor; the
test reads the rendered rows from the DOM and keeps a screenshot for people to look at."""

from __future__ import annotations

import os
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

from crackseg.utils.deployment.delivery.channels.slack import SlackHandler
from crackseg.utils.deployment.delivery.channels.webhook import WebhookHandler
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.chromium import run_chromium
from tests.support.monitor_servers import LiveServer
from tests.support.receivers import HttpReceiver, wait_until

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "status_page.png"
SLACK_SECRET = "xoxb-not-a-real-secret-93f1"
EXPECTED = {
    "api-gateway": "healthy",
    "segmenter-v2": "healthy",
    "legacy-batch": "degraded",
    "thumbnailer": "unhealthy",
}


class _Rows(HTMLParser):
    """Collects the deployments table's rows and the alert list from a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, str] = {}
        self.alerts: list[tuple[str, str]] = []
        self.records: list[str] = []
        self.channels: dict[str, str] = {}  # handler key -> dead letters shown
        self.dead_letters: list[str] = []  # handler keys
        self.loaded = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body" and a.get("data-loaded") == "true":
            self.loaded = True
        if tag == "tr" and a.get("data-deployment-id"):
            self.rows[a["data-deployment-id"] or ""] = a.get("data-status") or ""
        if tag == "tr" and a.get("data-record-id"):
            self.records.append(a["data-record-id"] or "")
        if tag == "tr" and a.get("data-channel-key"):
            self.channels[a["data-channel-key"] or ""] = a.get("data-dead-letters") or ""
        if tag == "tr" and a.get("data-dead-letter") is not None:
            self.dead_letters.append(a.get("data-handler-key") or "")
        if tag == "li" and a.get("data-alert-type"):
            self.alerts.append((a.get("data-deployment-id") or "", a["data-alert-type"] or ""))


def test_status_page_renders_every_deployment(tmp_path: Path, chromium_bin: str) -> None:
    binary = chromium_bin
    pager, slack = HttpReceiver().start(), HttpReceiver().start()
    pager.status = 400  # a misconfigured channel: every alert to it is dead-lettered
    try:
        _render_and_shoot(binary, tmp_path, pager, slack)
    finally:
        pager.close()
        slack.close()


def _render_and_shoot(
    binary: str, tmp_path: Path, pager: HttpReceiver, slack: HttpReceiver
) -> None:
    with LiveServer() as target:
        target.set("/ok", status=200, body='{"status": "healthy"}')
        target.set("/slow", status=200, body='{"status": "healthy"}', delay=0.05)
        target.set("/deg", status=503, body='{"status": "degraded"}')
        target.set("/bad", status=500, body='{"status": "unhealthy"}')
        monitor = DeploymentHealthMonitor(failure_threshold=1)
        try:
            monitor.add_alert_handler(WebhookHandler(pager.url + "/alerts", key="pager-webhook"))
            monitor.add_alert_handler(
                SlackHandler(f"{slack.url}/services/T01/B02/{SLACK_SECRET}", key="ops-slack")
            )
            paths = {"api-gateway": "/ok", "segmenter-v2": "/slow", "legacy-batch": "/deg",
                     "thumbnailer": "/bad"}  # fmt: skip
            for dep_id, path in paths.items():
                monitor.add_deployment_monitoring(dep_id, target.url(path), check_interval=0.5)
            release = DeploymentMetadata(
                "deploy-0042", "crackseg-unet:v2.1", "canary", version="v2.1"
            )
            release.set_state("success")
            release.end_time = release.start_time + 42.0
            monitor.store.save_deployment(release)
            monitor.start_monitoring()
            for dep_id in paths:
                assert monitor.wait_for_checks(dep_id, 4, 15.0)
            assert wait_until(lambda: bool(monitor.dispatcher.dead_letters()), 15.0)
            assert monitor.dispatcher.wait_idle(15.0)
            with WebServer(monitor) as server:
                url = server.url + "/"
                dom = run_chromium(binary, tmp_path / "profile", url, "--dump-dom").decode()
                parsed = _Rows()
                parsed.feed(dom)
                assert parsed.loaded, "the page never finished loading the API"
                assert parsed.rows == EXPECTED
                assert ("thumbnailer", "health_check_failed") in parsed.alerts
                assert parsed.records == ["deploy-0042"]
                assert "127.0.0.1" in dom and "Cannot reach" not in dom
                assert set(parsed.channels) == {"pager-webhook", "ops-slack"}
                assert int(parsed.channels["pager-webhook"]) >= 1
                assert parsed.channels["ops-slack"] == "0" and slack.accepted()
                assert parsed.dead_letters and set(parsed.dead_letters) == {"pager-webhook"}
                assert "HTTP 400" in dom and SLACK_SECRET not in dom

                shot = tmp_path / "status_page.png"
                run_chromium(binary, tmp_path / "profile2", url, f"--screenshot={shot}")
        finally:
            monitor.close()
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get("CRACKSEG_UPDATE_SCREENSHOTS") != "1":
        return  # a test run must not dirty the tree; CRACKSEG_UPDATE_SCREENSHOTS=1 refreshes
    DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOCS_SHOT.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.tmp")
    shutil.copyfile(shot, tmp)
    os.replace(tmp, DOCS_SHOT)  # a concurrent reader sees the old picture or the new one


def test_status_page_asks_for_the_token_when_reads_are_protected(
    tmp_path: Path, chromium_bin: str
) -> None:
    binary = chromium_bin
    monitor = DeploymentHealthMonitor()
    try:
        monitor.add_deployment_monitoring("private", "http://127.0.0.1:9/health")
        with WebServer(monitor, token="s3cret", protect_reads=True) as server:
            dom = run_chromium(
                binary, tmp_path / "profile", server.url + "/", "--dump-dom"
            ).decode()
    finally:
        monitor.close()
    parsed = _Rows()
    parsed.feed(dom)
    assert not parsed.loaded and parsed.rows == {}
    assert re.search(r'<form id="token-form" class="token-form">', dom), "token form not shown"
