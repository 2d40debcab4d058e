"""Alert routing: three real receivers behind webhook handlers whose ``match:`` blocks overlap.
Each gets what its match accepts; a notification nobody accepts is counted; a resolve goes
exactly where its firing went, even once the matches have changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.delivery import AlertDispatcher, RetryPolicy, build_handler
from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.routing import Match
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.models import MONITOR_ID, DeploymentMetadata
from crackseg.utils.deployment.service.exposition import text_exposition
from crackseg.utils.deployment.service.metrics import build_registry
from tests.support.receivers import HttpReceiver
from tests.support.service_helpers import Endpoint, cli
from tests.support.wait import wait_until

#: Receiver name -> its handler's match, as the file writes it.
MATCHES = {
    "models": {"deployments": ["model-*"]},
    "pager": {"severities": ["critical"], "events": ["alerts", "monitor"]},
    "releases": {"events": ["rollout"]},
}


@pytest.fixture
def receivers() -> Iterator[dict[str, HttpReceiver]]:
    started = {name: HttpReceiver().start() for name in MATCHES}
    yield started
    for r in started.values():
        r.close()


def _seen(receiver: HttpReceiver) -> list[tuple[str, str, str]]:
    return [
        (b["deployment_id"], b["alert_type"], b["state"])
        for b in (req.json() for req in receiver.accepted())
    ]


def _handlers(receivers: dict[str, HttpReceiver]) -> dict[str, AlertHandler]:
    return {
        name: build_handler(
            {"type": "webhook", "name": name, "url": f"{r.url}/{name}", "match": MATCHES[name]}
        )
        for name, r in receivers.items()
    }


def test_each_receiver_gets_what_its_match_accepts(receivers: dict[str, HttpReceiver]) -> None:
    model, api = Endpoint(status=500, body={}), Endpoint(status=500, body={})
    dispatcher = AlertDispatcher(retry=RetryPolicy(initial=0.05, max_delay=0.2, max_age=10))
    monitor = DeploymentHealthMonitor(dispatcher=dispatcher, failure_threshold=1,
                                      success_threshold=1)  # fmt: skip
    handlers = _handlers(receivers)
    try:
        for h in handlers.values():
            monitor.add_alert_handler(h)
        registry, _ = build_registry(monitor)
        monitor.add_deployment_monitoring("model-a", model.url, check_interval=0.1)
        monitor.add_deployment_monitoring("api", api.url, check_interval=0.1)
        monitor.start_monitoring()
        wait_until(lambda: len(monitor.get_active_alerts()) == 2, 20, "both deployments firing")
        # Rollout events and the monitor's own alerts go through the same dispatcher.
        for dep in ("model-a", "api"):
            dispatcher.dispatch("deployment_success", DeploymentMetadata(dep), severity="info",
                                state="firing")  # fmt: skip
        dispatcher.dispatch("monitor_overloaded", DeploymentMetadata(MONITOR_ID),
                            severity="critical", state="firing")  # fmt: skip
        assert dispatcher.unrouted == 0
        # Nobody takes a warning about "api" that is not a rollout event: counted, not sent.
        assert dispatcher.dispatch("high_response_time", DeploymentMetadata("api"),
                                   severity="warning", state="firing") == []  # fmt: skip
        assert dispatcher.unrouted == 1
        assert b"crackseg_notifications_unrouted_total 1.0" in text_exposition(registry)
        assert dispatcher.wait_idle(10)
        fired = ("health_check_failed", "firing")
        assert sorted(_seen(receivers["models"])) == [
            ("model-a", "deployment_success", "firing"), ("model-a", *fired)]  # fmt: skip
        assert sorted(_seen(receivers["pager"])) == [
            ("api", *fired), (MONITOR_ID, "monitor_overloaded", "firing"), ("model-a", *fired)]  # fmt: skip
        assert sorted(_seen(receivers["releases"])) == [
            ("api", "deployment_success", "firing"), ("model-a", "deployment_success", "firing")]  # fmt: skip

        # The matches change (a reload); the resolve still goes where the firing went.
        handlers["models"].match = Match(deployments=["nothing-*"])
        handlers["releases"].match = None
        model.status, model.body = 200, {"status": "healthy"}
        wait_until(lambda: not monitor.get_active_alerts("model-a"), 20, "model-a resolved")
        assert dispatcher.wait_idle(10)
        resolved = ("model-a", "health_check_failed", "resolved")
        assert resolved in _seen(receivers["models"]) and resolved in _seen(receivers["pager"])
        assert resolved not in _seen(receivers["releases"])
    finally:
        monitor.stop_monitoring()
        monitor.close()
        model.close()
        api.close()


def test_the_file_checks_match_blocks_naming_each_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "deployments: [{id: api, url: 'http://127.0.0.1:1/health'}]\n"
        "handlers:\n"
        "  - {type: log, match: {deploymnts: [api]}}\n"
        "  - {type: log, name: two, match: {events: [rollouts], severities: [urgent]}}\n"
        "  - {type: log, name: three, match: {deployments: ['model-*'], events: [rollout]}}\n"
    )
    r = cli("validate", str(cfg))
    assert r.returncode == 1
    body = r.stderr
    assert "handlers[0].match.deploymnts: unknown key (did you mean 'deployments'?)" in body
    assert "handlers[1].match.events[0]: must be one of 'alerts', 'rollout' or 'monitor'" in body
    assert "handlers[1].match.severities[0]: must be one of" in body
    assert "handlers[2]" not in body
