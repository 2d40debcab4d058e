"""The log handler: a RESOLVED line at the level of the FIRING it ends."""

from __future__ import annotations

import logging

import pytest

from crackseg.utils.deployment.delivery import LoggingAlertHandler
from crackseg.utils.deployment.models import DeploymentMetadata


@pytest.mark.parametrize(
    ("severity", "level"), [("critical", logging.ERROR), ("warning", logging.WARNING)]
)
def test_resolved_logs_at_the_level_of_its_firing(
    caplog: pytest.LogCaptureFixture, severity: str, level: int
) -> None:
    handler = LoggingAlertHandler("test.alerts")
    caplog.set_level(logging.WARNING, "test.alerts")  # the default level shows both lines
    for state, message in (("firing", "health check unhealthy"), ("resolved", "passing again")):
        handler.send_alert("health_check_failed", DeploymentMetadata("api"), state=state,
                           severity=severity, message=message)  # fmt: skip
    assert [(r.levelno, r.getMessage().split()[0]) for r in caplog.records] == [
        (level, "[FIRING]"),
        (level, "[RESOLVED]"),
    ]
