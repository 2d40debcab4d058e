"""Alertmanager delivery: a real prometheus-alertmanager, and the re-send loop's wire traffic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.delivery import AlertDispatcher, AlertmanagerHandler, RetryPolicy
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.receivers import AlertmanagerProcess, HttpReceiver, wait_until

FAST = RetryPolicy(initial=0.05, max_delay=0.5)


@pytest.fixture(scope="module")
def alertmanager(
    tmp_path_factory: pytest.TempPathFactory, alertmanager_bin: str
) -> Iterator[AlertmanagerProcess]:
    binary = alertmanager_bin
    am = AlertmanagerProcess(binary, tmp_path_factory.mktemp("alertmanager"))
    try:
        assert am.wait_ready(), (Path(am.log.name).read_text(errors="replace"))[-2000:]
        yield am
    finally:
        am.close()


def _send(d: AlertDispatcher, dep: str, state: str, **kw: Any) -> None:
    facts: dict[str, Any] = {
        "severity": "warning",
        "message": "p95 above threshold",
        "value": 1250.5,
        "threshold": 1000.0,
        "started_at": 1_700_000_000.0,
    }
    d.dispatch("high_response_time", DeploymentMetadata(dep), state=state, **(facts | kw))


def _ours(am: AlertmanagerProcess, dep: str) -> list[dict[str, Any]]:
    return [
        a
        for a in am.alerts()
        if a["labels"].get("deployment_id") == dep and a["status"]["state"] == "active"
    ]


def test_alertmanager_lists_alert_active_then_not_after_resolved(
    alertmanager: AlertmanagerProcess,
) -> None:
    d = AlertDispatcher(retry=FAST)
    # Two monitors on two hosts sending the same alert: Alertmanager keeps one.
    first = AlertmanagerHandler(alertmanager.url, resend_interval=30, key="am-a")
    second = AlertmanagerHandler(alertmanager.url, resend_interval=30, key="am-b")
    d.add_handler(first)
    d.add_handler(second)
    try:
        _send(d, "web-1", "firing")
        assert d.wait_idle(10)
        assert wait_until(lambda: len(_ours(alertmanager, "web-1")) == 1, 10)
        (alert,) = _ours(alertmanager, "web-1")
        assert alert["labels"] == {
            "alertname": "high_response_time",
            "deployment_id": "web-1",
            "severity": "warning",
            "monitor": "crackseg-monitor",
        }
        assert alert["annotations"]["value"] == "1250.5"
        assert alert["annotations"]["threshold"] == "1000.0"
        assert alert["annotations"]["description"] == "p95 above threshold"
        assert alert["startsAt"].startswith("2023-11-14T22:13:20")
        _send(d, "web-1", "resolved", severity="critical")  # labels kept from the firing alert
        assert d.wait_idle(10)
        assert wait_until(lambda: not _ours(alertmanager, "web-1"), 10)
        assert first.active() == [] and second.active() == []
        assert all(s["sent"] == 2 for s in d.stats().values())
    finally:
        d.close()


def test_firing_alerts_are_resent_until_resolved() -> None:
    fake = HttpReceiver().start()
    handler = AlertmanagerHandler(fake.url, resend_interval=0.2, key="am")
    d = AlertDispatcher(retry=FAST)
    d.add_handler(handler)
    try:
        _send(d, "a", "firing")
        assert fake.wait_for(3)  # the notice and two re-sends
        posts = [r for r in fake.accepted()]
        assert {r.path for r in posts} == {"/api/v2/alerts"}
        for r in posts:
            (alert,) = r.json()
            ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
            # Kept alive for a few intervals, no more: if we die it expires on its own.
            assert 0.2 < ends.timestamp() - datetime.now().timestamp() <= 0.8 + 1
        _send(d, "a", "resolved")
        _send(d, "b", "firing")
        assert d.wait_idle(10)
        seen = len(fake.requests)
        assert fake.wait_for(seen + 2)
        later = [r.json() for r in fake.requests[seen:]]
        assert all([x["labels"]["deployment_id"] for x in body] == ["b"] for body in later)
        resolved = [a for r in posts + fake.requests for a in r.json() if "endsAt" in a]
        assert handler.resend_stats()["resent"] >= 3 and handler.resend_stats()["active"] == 1
        assert d.stats()[handler.name]["channel"]["resend"]["active"] == 1
        assert resolved
    finally:
        d.close()
        fake.close()


def test_resend_failure_is_counted_not_raised() -> None:
    fake = HttpReceiver().start()
    fake.status = 503
    fake.statuses = [200]
    handler = AlertmanagerHandler(fake.url + "/am", resend_interval=0.1)
    try:
        handler.send_alert("process_not_running", DeploymentMetadata("a"), state="firing")
        assert wait_until(lambda: handler.resend_stats()["failed"] >= 2, 10)
        stats = handler.resend_stats()
        assert "HTTP 503" in stats["last_error"] and stats["active"] == 1
        assert fake.requests[0].path == "/am/api/v2/alerts"
    finally:
        handler.close()
        fake.close()
