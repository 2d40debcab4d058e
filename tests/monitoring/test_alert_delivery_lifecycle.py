"""What reaches the receivers: a resolve to exactly who got the firing, held firings sent when
the hold ends, alert state carried over re-adds and restarts. Real HTTP service and receivers."""

from __future__ import annotations

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
from crackseg.utils.deployment.history.sqlite.alert_state import SQLiteAlertState
from crackseg.utils.deployment.monitoring.suppression import SilenceRegistry
from tests.support.receivers import AlertmanagerProcess, HttpReceiver, wait_until

FAST = RetryPolicy(initial=0.05, max_delay=0.5)
HEALTH = "health_check_failed"


@pytest.fixture
def service() -> Iterator[HttpReceiver]:
    """The monitored service: its /health answers whatever ``status`` says (failing first)."""
    r = HttpReceiver().start()
    r.status = 503
    yield r
    r.close()


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.close()


def _monitor(**kw: Any) -> DeploymentHealthMonitor:
    opts: dict[str, Any] = {"failure_threshold": 1, "success_threshold": 1,
                            "flap_max_changes": None} | kw  # fmt: skip
    return DeploymentHealthMonitor(dispatcher=AlertDispatcher(retry=FAST), **opts)


def _started(m: DeploymentHealthMonitor, dep: str) -> list[float]:
    return [a["started_at"] for a in m.get_active_alerts(dep) if a["alert_type"] == HEALTH]


def _notices(hook: HttpReceiver, dep: str, kind: str = HEALTH) -> list[str]:
    return [
        b["state"]
        for b in (r.json() for r in hook.accepted())
        if b["deployment_id"] == dep and b["alert_type"] == kind
    ]


def test_silence_after_firing_still_lets_the_resolve_through(
    service: HttpReceiver, hook: HttpReceiver
) -> None:
    silences = SilenceRegistry()
    with _monitor() as m:
        m.add_suppressor(silences)
        m.add_alert_handler(WebhookHandler(hook.url))
        m.add_deployment_monitoring("svc", service.url + "/health", check_interval=0.1)
        m.start_monitoring()
        assert wait_until(lambda: _notices(hook, "svc") == ["firing"], 10)
        silences.add(deployment_id="svc", duration_s=600, comment="too late")
        service.status = 200
        assert wait_until(lambda: _notices(hook, "svc") == ["firing", "resolved"], 10)
        resolved = hook.accepted()[-1].json()
        assert resolved["message"] == "health check passing again"


def test_firing_while_silenced_sends_nothing_and_the_end_of_the_silence_sends_it(
    service: HttpReceiver, hook: HttpReceiver
) -> None:
    silences = SilenceRegistry()
    quiet = HttpReceiver().start()  # a second service: fails and recovers under its silence
    quiet.status = 503
    try:
        sid = silences.add(deployment_id="svc", duration_s=600)
        silences.add(deployment_id="quiet", duration_s=600)
        with _monitor() as m:
            m.add_suppressor(silences)
            m.add_alert_handler(WebhookHandler(hook.url))
            m.add_deployment_monitoring("svc", service.url + "/health", check_interval=0.1)
            m.add_deployment_monitoring("quiet", quiet.url + "/health", check_interval=0.1)
            m.start_monitoring()
            assert m.wait_for_checks("quiet", 3) and m.wait_for_checks("svc", 3)
            quiet.status = 200

            def history() -> list[Any]:
                return [a for a in m.get_alert_history("quiet") if a.alert_type == HEALTH]

            assert wait_until(lambda: [a.state for a in history()] == ["firing", "resolved"], 10)
            assert m.dispatcher.wait_idle(5)
            assert hook.requests == []  # neither the firing nor its resolve
            orphan = history()[-1]
            assert orphan.suppressed_reason == "its firing reached no handler"
            # The silence on svc ends while it still fails: the firing goes out at once.
            assert silences.remove(sid)
            assert wait_until(lambda: _notices(hook, "svc") == ["firing"], 5)
            (first,) = [r.json() for r in hook.accepted() if r.json()["alert_type"] == HEALTH]
            assert first["repeat"] is False
            assert [first["started_at"]] == _started(m, "svc")
            service.status = 200
            assert wait_until(lambda: _notices(hook, "svc") == ["firing", "resolved"], 10)
    finally:
        quiet.close()


def test_flapping_after_firing_holds_repeats_but_not_the_resolve(
    service: HttpReceiver, hook: HttpReceiver
) -> None:
    with _monitor(success_threshold=6, flap_max_changes=3, flap_window=3.0) as m:
        m.add_alert_handler(WebhookHandler(hook.url))
        m.add_deployment_monitoring("svc", service.url + "/health", check_interval=0.1)
        m.start_monitoring()
        assert wait_until(lambda: _notices(hook, "svc") == ["firing"], 10)
        for status in (200, 503, 200, 503):  # four changes: more than three is flapping
            service.status = status
            assert m.wait_for_checks("svc", 2)
        assert wait_until(lambda: _notices(hook, "svc", "deployment_flapping") == ["firing"], 5)
        service.status = 200
        assert wait_until(lambda: _notices(hook, "svc") == ["firing", "resolved"], 10)
        assert wait_until(
            lambda: _notices(hook, "svc", "deployment_flapping") == ["firing", "resolved"], 10
        )


def test_alertmanager_clears_an_alert_silenced_after_it_fired(
    tmp_path: Path, service: HttpReceiver, alertmanager_bin: str
) -> None:
    am = AlertmanagerProcess(alertmanager_bin, tmp_path)
    try:
        assert am.wait_ready()
        silences = SilenceRegistry()
        with _monitor() as m:
            m.add_suppressor(silences)
            m.add_alert_handler(AlertmanagerHandler(am.url, resend_interval=30))
            m.add_deployment_monitoring("svc", service.url + "/health", check_interval=0.1)
            m.start_monitoring()

            def state() -> set[str]:
                return {a["status"]["state"] for a in am.alerts()
                        if a["labels"]["deployment_id"] == "svc"}  # fmt: skip

            assert wait_until(lambda: state() == {"active"}, 20, 0.1)
            silences.add(deployment_id="svc", duration_s=600)
            service.status = 200
            assert wait_until(lambda: "active" not in state(), 20, 0.1)
    finally:
        am.close()


def test_re_adding_with_new_settings_keeps_the_alert_and_removing_resolves_it(
    service: HttpReceiver, hook: HttpReceiver
) -> None:
    with _monitor() as m:
        m.add_alert_handler(WebhookHandler(hook.url))
        m.add_deployment_monitoring("svc", service.url + "/health", check_interval=0.1)
        m.start_monitoring()
        assert wait_until(lambda: _notices(hook, "svc") == ["firing"], 10)
        (started,) = _started(m, "svc")
        checks = m.get_deployment_status("svc")["total_checks"]
        m.add_deployment_monitoring(
            "svc", service.url + "/health", check_interval=0.1, thresholds={"response_time_ms": 5}
        )
        assert m.wait_for_checks("svc", 5)
        assert m.get_deployment_status("svc")["total_checks"] >= checks + 5  # counters kept
        assert _started(m, "svc") == [started]
        assert m.dispatcher.wait_idle(5)
        assert _notices(hook, "svc") == ["firing"]  # no resolve, no second firing
        assert m.remove_deployment_monitoring("svc")
        assert wait_until(lambda: _notices(hook, "svc") == ["firing", "resolved"], 5)


def test_a_restart_keeps_firing_alerts_and_resolves_one_that_recovered(
    tmp_path: Path, service: HttpReceiver, hook: HttpReceiver
) -> None:
    db = tmp_path / "history.db"
    url = service.url + "/health"
    with _monitor(alert_state=SQLiteAlertState(db)) as m:
        m.add_alert_handler(WebhookHandler(hook.url, key="ops"))
        m.add_deployment_monitoring("svc", url, check_interval=0.1)
        m.start_monitoring()
        assert wait_until(lambda: _notices(hook, "svc") == ["firing"], 10)
        (started,) = _started(m, "svc")
    with _monitor(alert_state=SQLiteAlertState(db)) as m:
        m.add_alert_handler(WebhookHandler(hook.url, key="ops"))
        m.add_deployment_monitoring("svc", url, check_interval=0.1)
        m.start_monitoring()
        assert m.wait_for_checks("svc", 5)
        assert _started(m, "svc") == [started]
        assert m.dispatcher.wait_idle(5)
        assert _notices(hook, "svc") == ["firing"]
        m.stop_monitoring()
    service.status = 200  # recovers while nothing watches it
    with _monitor(alert_state=SQLiteAlertState(db)) as m:
        m.add_alert_handler(WebhookHandler(hook.url, key="ops"))
        m.add_deployment_monitoring("svc", url, check_interval=0.1)
        m.start_monitoring()
        assert wait_until(lambda: _notices(hook, "svc") == ["firing", "resolved"], 10)
        assert hook.accepted()[-1].json()["started_at"] == started
    assert [r for r in SQLiteAlertState(db).load() if r.firing.alert_type == HEALTH] == []


def test_alertmanager_keeps_a_restored_alert_alive_and_resolves_it(
    tmp_path: Path, service: HttpReceiver, alertmanager_bin: str
) -> None:
    am = AlertmanagerProcess(alertmanager_bin, tmp_path)
    db, url = tmp_path / "history.db", service.url + "/health"
    try:
        assert am.wait_ready()

        def svc() -> list[dict[str, Any]]:
            return [a for a in am.alerts() if a["labels"]["deployment_id"] == "svc"
                    and a["labels"]["alertname"] == HEALTH]  # fmt: skip

        with _monitor(alert_state=SQLiteAlertState(db)) as m:
            m.add_alert_handler(AlertmanagerHandler(am.url, resend_interval=30, key="am"))
            m.add_deployment_monitoring("svc", url, check_interval=0.1)
            m.start_monitoring()
            assert wait_until(lambda: [a["status"]["state"] for a in svc()] == ["active"], 20)
            starts = svc()[0]["startsAt"]
        with _monitor(alert_state=SQLiteAlertState(db)) as m:
            handler = AlertmanagerHandler(am.url, resend_interval=30, key="am")
            m.add_alert_handler(handler)
            m.add_deployment_monitoring("svc", url, check_interval=0.1)
            # Taken back without a request: the re-send loop keeps it alive from here on.
            assert [a["startsAt"] for a in handler.active() if a["labels"]["alertname"] == HEALTH
                    ] == [starts]  # fmt: skip
            m.start_monitoring()
            assert m.wait_for_checks("svc", 3)
            service.status = 200
            assert wait_until(lambda: not any(a["status"]["state"] == "active" for a in svc()), 20)
    finally:
        am.close()
