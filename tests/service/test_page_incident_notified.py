"""Incidents say who was notified: each alert event remembers the handlers it was sent to
(in the SQLite history, so after a restart too), and an incident row lists them; an
incident whose notifications went nowhere says so with an empty list."""

from __future__ import annotations

from pathlib import Path

import requests

from crackseg.utils.deployment.delivery.channels.webhook import WebhookHandler
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.service.web.incidents import episodes
from tests.support.page_rig import URL_SECRET, page_rig
from tests.support.receivers import HttpReceiver, wait_until


def _failed(incidents: list[dict[str, object]], dep: str) -> dict[str, object]:
    found = [i for i in incidents if i["deployment_id"] == dep
             and i["alert_type"] == "health_check_failed"]  # fmt: skip
    assert found, f"no incident of {dep}: {incidents}"
    return found[0]


def test_an_incident_lists_the_handlers_its_alerts_were_sent_to(tmp_path: Path) -> None:
    pager = HttpReceiver().start()
    try:
        with page_rig(tmp_path) as rig:
            # Before any handler: an outage whose alerts reach nobody.
            rig.target.set("/quiet", status=500, body='{"status": "unhealthy"}')
            rig.add("quiet", "/quiet", checks=2, check_interval=0.2)
            rig.target.set("/quiet", status=200, body='{"status": "healthy"}')
            assert rig.monitor.wait_for_checks("quiet", 4, 15.0)

            rig.monitor.add_alert_handler(WebhookHandler(pager.url + "/alerts", key="pager"))
            rig.target.set("/flaky", status=500, body='{"status": "unhealthy"}')
            rig.add("flaky", "/flaky", checks=2, check_interval=0.2)
            rig.target.set("/flaky", status=200, body='{"status": "healthy"}')
            assert rig.monitor.wait_for_checks("flaky", 4, 15.0)
            assert pager.wait_for(2, 15.0), "the pager got no firing and resolve"
            assert wait_until(
                lambda: (
                    _failed(episodes(rig.monitor.get_alert_history("flaky")), "flaky")["end"]
                    is not None
                ),
                15.0,
            )
            r = requests.get(rig.server.url + "/api/v1/incidents", timeout=10)
            assert r.status_code == 200
            incidents = r.json()["incidents"]
            assert _failed(incidents, "flaky")["notified"] == ["pager"]
            quiet = _failed(incidents, "quiet")
            assert quiet["notified"] == [] and quiet["end"] is not None
            assert URL_SECRET not in r.text
            # Each transition says where it went, in the alert history too (held to its model).
            got = requests.get(
                rig.server.url + "/api/v1/alerts/history?deployment_id=flaky", timeout=10
            )
            assert got.status_code == 200, got.text
            events = got.json()["events"]
            assert {e["state"] for e in events} >= {"firing", "resolved"}
            assert all(e["notified"] == ["pager"] for e in events if e["alert_type"]
                       == "health_check_failed")  # fmt: skip
            rig.store.flush()
        # What was sent is in the history file: a restarted service still knows.
        store = SQLiteStore(tmp_path / "history.db")
        try:
            again = episodes(store.alert_history())
            assert _failed(again, "flaky")["notified"] == ["pager"]
            assert _failed(again, "quiet")["notified"] == []
        finally:
            store.close()
    finally:
        pager.close()
