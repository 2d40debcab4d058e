"""Two monitors with one configuration behind a two-peer Alertmanager cluster: every
incident reaches the receiver once, also with one monitor killed or one peer stopped."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.alertmanager_cluster import GROUP_INTERVAL, PEER_TIMEOUT, AlertmanagerCluster
from tests.support.monitor_servers import LiveServer
from tests.support.receivers import HttpReceiver
from tests.support.service_helpers import Running
from tests.support.wait import wait_until

# Long enough for any duplicate to show: a later peer notifies PEER_TIMEOUT after the
# first, and a group's changes go out every GROUP_INTERVAL.
QUIET = 2 * GROUP_INTERVAL + PEER_TIMEOUT + 1.0

CONFIG = """\
deployments:
  - {{id: web, url: "{url}", check_interval: 200ms, timeout: 1s}}
alert_thresholds: {{error_rate_percent: 100}}  # only health_check_failed in this test
monitor: {{failure_threshold: 1, success_threshold: 1, flap_max_changes: null}}
handlers:
  - type: alertmanager
    url: {peers}
    resend_interval: 60
    timeout: 2
store: {{path: monitor.db, flush_interval: 200ms}}
server: {{enabled: false}}
"""


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.close()


def _notifications(hook: HttpReceiver) -> list[tuple[str, str]]:
    """(status, startsAt) of each health_check_failed notification, in arrival order."""
    found = []
    for r in hook.requests:
        body = r.json()
        if body.get("groupLabels") == {"alertname": "health_check_failed", "deployment_id": "web"}:
            (alert,) = body["alerts"]
            assert alert["status"] == body["status"]
            found.append((body["status"], alert["startsAt"]))
    return found


def test_one_notification_per_incident_through_kills_and_a_lost_peer(
    tmp_path: Path, hook: HttpReceiver, alertmanager_bin: str
) -> None:
    binary = alertmanager_bin
    cluster = AlertmanagerCluster(binary, tmp_path / "am", hook.url + "/hook")
    monitors: list[Running] = []
    with LiveServer() as service:
        service.set("/health", status=200, body='{"status": "healthy"}')
        try:
            cluster.wait_joined()
            text = CONFIG.format(url=service.url("/health"), peers=cluster.urls)
            for name in ("a", "b"):
                # The same file in two folders: one configuration, a store each.
                folder = tmp_path / name
                folder.mkdir()
                (folder / "monitor.yaml").write_text(text)
                monitors.append(Running("run", "-c", str(folder / "monitor.yaml")))
            for m in monitors:
                m.wait_log("monitoring 1 deployment")
            wait_until(lambda: service.hits.get("/health", 0) > 10, 30, "monitors checking")

            def incident(n: int) -> None:
                service.set("/health", status=500, body='{"status": "unhealthy"}')
                wait_until(lambda: len(_notifications(hook)) >= 2 * n - 1, 30, f"firing {n}")
                service.set("/health", status=200, body='{"status": "healthy"}')
                wait_until(lambda: len(_notifications(hook)) >= 2 * n, 30, f"resolved {n}")

            incident(1)  # both monitors, both peers
            os.kill(monitors[0].proc.pid, signal.SIGKILL)
            monitors[0].proc.wait(10)
            incident(2)  # one monitor killed
            cluster.peers[0].close()
            incident(3)  # one Alertmanager stopped
            time.sleep(QUIET)  # a duplicate of any of them would arrive by now
            seen = _notifications(hook)
            # Exactly one firing and one resolved per incident, in order: no duplicate
            # from a second monitor or a second peer.
            assert [s for s, _ in seen] == ["firing", "resolved"] * 3, seen
            starts = [t for _, t in seen]
            assert starts[0::2] == starts[1::2] and len(set(starts)) == 3, seen
            assert monitors[1].proc.poll() is None, monitors[1].err[-10:]
        finally:
            for m in monitors:
                if m.proc.poll() is None:
                    m.proc.terminate()
                    m.proc.wait(20)
            cluster.close()
