"""Slack incoming-webhook messages, checked at a local receiver."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from crackseg.utils.deployment.delivery import AlertDispatcher, RetryPolicy, build_handler
from crackseg.utils.deployment.delivery.channels.slack import COLORS
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.receivers import HttpReceiver

FAST = RetryPolicy(initial=0.02, max_delay=0.1, max_attempts=3)
HOOK_PATH = "/services/T0001/B0001/SLACKTOKEN123"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.close()


def _dispatcher(receiver: HttpReceiver, **options: Any) -> AlertDispatcher:
    d = AlertDispatcher(retry=FAST)
    d.add_handler(
        build_handler({"type": "slack", "webhook_url": receiver.url + HOOK_PATH, **options})
    )
    return d


def _alert(d: AlertDispatcher, state: str, severity: str = "critical", **kw: Any) -> None:
    d.dispatch(
        "high_memory_usage",
        DeploymentMetadata("model-api", version="2.0.1"),
        state=state,
        severity=severity,
        message="RSS above limit",
        value=2300.25,
        threshold=2048.0,
        **kw,
    )


def test_firing_then_resolved_message_shape(receiver: HttpReceiver) -> None:
    d = _dispatcher(receiver, channel="#ops", username="crackseg")
    try:
        _alert(d, "firing")
        _alert(d, "firing", severity="warning", repeat=True)
        _alert(d, "resolved")
        assert d.wait_idle(10)
    finally:
        d.close()
    firing, repeat, resolved = (r.json() for r in receiver.accepted())
    assert receiver.requests[0].path == HOOK_PATH
    assert receiver.requests[0].headers["Content-Type"] == "application/json"
    assert firing["channel"] == "#ops" and firing["username"] == "crackseg"
    assert firing["text"] == (
        "CRITICAL: high_memory_usage on model-api - value 2300.25 (threshold 2048)"
    )
    (att,) = firing["attachments"]
    assert att["color"] == COLORS["critical"] == "#d00000"
    fields = {f["title"]: f["value"] for f in att["fields"]}
    assert fields == {
        "Deployment": "model-api",
        "Severity": "critical",
        "Value": "2300.25",
        "Threshold": "2048",
        "Version": "2.0.1",
    }
    assert att["text"] == "RSS above limit" and isinstance(att["ts"], int)
    assert repeat["attachments"][0]["color"] == COLORS["warning"]
    assert repeat["attachments"][0]["title"].endswith("(still firing)")
    assert resolved["attachments"][0]["color"] == COLORS["resolved"] == "#2eb886"
    assert resolved["text"] == "Resolved: high_memory_usage on model-api"


def test_send_resolved_off(receiver: HttpReceiver) -> None:
    d = _dispatcher(receiver, send_resolved=False)
    try:
        _alert(d, "firing")
        _alert(d, "resolved")
        assert d.wait_idle(10)
    finally:
        d.close()
    assert [r.json()["attachments"][0]["color"] for r in receiver.accepted()] == ["#d00000"]


def test_revoked_webhook_is_permanent_and_url_never_shown(
    receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.status = 404  # Slack's answer for a deleted webhook ("no_service")
    d = _dispatcher(receiver)
    try:
        _alert(d, "firing")
        assert d.wait_idle(10)
        (handler,) = d.handlers
        shown = caplog.text + json.dumps([d.stats(), d.dead_letters()]) + repr(handler)
    finally:
        d.close()
    assert len(receiver.requests) == 1 and "HTTP 404" in shown
    assert "SLACKTOKEN123" not in shown and "T0001" not in shown
    assert handler.name == f"slack:127.0.0.1:{receiver.port}"
