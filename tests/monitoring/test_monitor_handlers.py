"""End to end with the real monitor: a failing service alerts through real receivers.

The monitor checks a real HTTP endpoint; its alerts go to a real Alertmanager (active,
then resolved when the service recovers) and, unless silenced or in maintenance, to a
webhook receiver. Suppressed alerts are still recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.delivery import (
    AlertDispatcher,
    AlertmanagerHandler,
    RetryPolicy,
    WebhookHandler,
)
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.suppression import (
    MaintenanceSchedule,
    MaintenanceWindow,
    SilenceRegistry,
)
from tests.support.receivers import AlertmanagerProcess, HttpReceiver, wait_until

FAST = RetryPolicy(initial=0.05, max_delay=0.5)


@pytest.fixture
def service() -> Iterator[HttpReceiver]:
    """The monitored service: its /health answers whatever ``status`` says."""
    r = HttpReceiver().start()
    r.status = 503
    yield r
    r.close()


@pytest.fixture
def monitor() -> Iterator[DeploymentHealthMonitor]:
    m = DeploymentHealthMonitor(failure_threshold=1, success_threshold=1, flap_max_changes=None)
    m.dispatcher.close()
    m.dispatcher = AlertDispatcher(retry=FAST)
    yield m
    m.stop_monitoring()
    m.close()


def _health_alerts(m: DeploymentHealthMonitor, dep: str) -> list[Any]:
    return [a for a in m.get_alert_history(dep) if a.alert_type == "health_check_failed"]


def test_alertmanager_sees_the_alert_fire_and_resolve(
    tmp_path: Path, service: HttpReceiver, monitor: DeploymentHealthMonitor, alertmanager_bin: str
) -> None:
    am = AlertmanagerProcess(alertmanager_bin, tmp_path)
    try:
        assert am.wait_ready()
        monitor.add_alert_handler(AlertmanagerHandler(am.url, resend_interval=30))
        monitor.add_deployment_monitoring("svc", service.url + "/health", check_interval=0.2)
        monitor.start_monitoring()

        def state() -> set[str]:
            return {
                a["status"]["state"]
                for a in am.alerts()
                if a["labels"]["deployment_id"] == "svc"
                and a["labels"]["alertname"] == "health_check_failed"
            }

        assert wait_until(lambda: state() == {"active"}, 20, 0.1)
        service.status = 200
        assert wait_until(lambda: "active" not in state(), 20, 0.1)
        assert [a.state for a in _health_alerts(monitor, "svc")][-2:] == ["firing", "resolved"]
    finally:
        am.close()


def test_silence_and_maintenance_suppress_notices_but_not_the_record(
    service: HttpReceiver, monitor: DeploymentHealthMonitor
) -> None:
    hook = HttpReceiver().start()
    try:
        silences = SilenceRegistry()
        silences.add(deployment_id="quiet", duration_s=600, comment="known outage")
        now = time.time()
        window = MaintenanceWindow("upgrade", deployments=("maint",), starts_at=now - 60,
                                   ends_at=now + 600)  # fmt: skip
        monitor.add_suppressor(silences)
        monitor.add_suppressor(MaintenanceSchedule([window]))
        monitor.add_alert_handler(WebhookHandler(hook.url))
        for dep in ("quiet", "maint", "loud"):
            monitor.add_deployment_monitoring(dep, service.url + "/health", check_interval=0.2)
        monitor.start_monitoring()
        assert wait_until(
            lambda: all(_health_alerts(monitor, d) for d in ("quiet", "maint", "loud")), 20
        )
        assert monitor.dispatcher.wait_idle(10)
        notified = {r.json()["deployment_id"] for r in hook.accepted()}
        assert notified == {"loud"}
        (quiet,) = _health_alerts(monitor, "quiet")[:1]
        (maint,) = _health_alerts(monitor, "maint")[:1]
        assert str(quiet.suppressed_reason).startswith("silenced by ")
        assert "known outage" in str(quiet.suppressed_reason)
        assert maint.suppressed_reason == "maintenance window 'upgrade'"
        assert _health_alerts(monitor, "loud")[0].suppressed_reason is None
    finally:
        hook.close()
