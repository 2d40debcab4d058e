"""Alert delivery seen through the web face: a real monitor alerts on a real failing target,
a real webhook receiver on 127.0.0.1 refuses the notification (400: permanent, dead-lettered),
and the dead letter shows in ``/api/v1/notifications`` and ``/metrics``; the retry endpoint
(token required) re-queues it and, once the receiver accepts, it is delivered."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from crackseg.utils.deployment.delivery.channels.webhook import WebhookHandler, verify_signature
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.monitor_servers import LiveServer
from tests.support.receivers import HttpReceiver, wait_until

TOKEN = "web-notify-token-5d1e"
URL_TOKEN = "hook-path-secret-8c2f"
HMAC_SECRET = "hmac-secret-41aa"
HEADER_SECRET = "header-secret-77b0"
SECRETS = (TOKEN, URL_TOKEN, HMAC_SECRET, HEADER_SECRET)
HTTP_TIMEOUT = 10.0


@dataclass
class Rig:
    monitor: DeploymentHealthMonitor
    server: WebServer
    pager: HttpReceiver  # refuses with 400 until told otherwise
    audit: HttpReceiver  # one 503 (retried), then accepts

    def get(self, path: str, token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(self.server.url + path, headers=headers, timeout=HTTP_TIMEOUT)

    def post(self, path: str, token: str | None = TOKEN, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(self.server.url + path, headers=headers, timeout=HTTP_TIMEOUT, **kw)

    def report(self) -> dict[str, Any]:
        r = self.get("/api/v1/notifications")
        assert r.status_code == 200, r.text
        assert not any(s in r.text for s in SECRETS), "a secret reached the API"
        body: dict[str, Any] = r.json()
        return body

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        r = self.get("/metrics")
        assert r.status_code == 200
        assert not any(s in r.text for s in SECRETS), "a secret reached /metrics"
        samples = [s for fam in text_string_to_metric_families(r.text) for s in fam.samples]
        # Every series names the monitor that wrote it; the assertions below are about the rest.
        assert all(s.labels.get("monitor_instance") for s in samples)
        return {
            (s.name, frozenset((k, v) for k, v in s.labels.items() if k != "monitor_instance")): (
                s.value
            )
            for s in samples
        }


def _handler(report: dict[str, Any], key: str) -> dict[str, Any]:
    (row,) = [h for h in report["handlers"] if h["key"] == key]
    return row


@pytest.fixture
def rig() -> Iterator[Rig]:
    pager, audit = HttpReceiver().start(), HttpReceiver().start()
    pager.status = 400
    audit.statuses = [503]
    target = LiveServer().__enter__()
    target.set("/bad", status=500, body='{"status": "unhealthy"}')
    monitor = DeploymentHealthMonitor(failure_threshold=1)
    server = WebServer(monitor, token=TOKEN)
    try:
        monitor.add_alert_handler(
            WebhookHandler(
                f"{pager.url}/hooks/{URL_TOKEN}?token={URL_TOKEN}",
                secret=HMAC_SECRET,
                headers={"X-Api-Key": HEADER_SECRET},
                key="pager",
            )
        )
        monitor.add_alert_handler(WebhookHandler(f"{audit.url}/audit", key="audit"))
        monitor.add_deployment_monitoring("thumbnailer", target.url("/bad"), check_interval=0.2)
        server.start()
        monitor.start_monitoring()
        yield Rig(monitor, server, pager, audit)
    finally:
        server.stop()
        monitor.close()
        target.__exit__(None, None, None)
        pager.close()
        audit.close()


def _dead_lettered(rig: Rig) -> int:
    """Wait for the first dead letter, then freeze the alert stream; returns how many."""
    assert wait_until(lambda: len(rig.monitor.dispatcher.dead_letters()) >= 1, 15.0)
    rig.monitor.stop_monitoring()  # no further alerts: the counts below are final
    assert rig.monitor.dispatcher.wait_idle(15.0)
    n = len(rig.monitor.dispatcher.dead_letters())
    assert n >= 1
    return n


def test_dead_letter_is_shown_then_retried_and_delivered(rig: Rig) -> None:
    n = _dead_lettered(rig)
    report = rig.report()
    pager, audit = _handler(report, "pager"), _handler(report, "audit")
    # 400 is permanent: one try each, no retry, straight to the dead-letter list.
    assert pager["kind"] == "webhook" and pager["name"].startswith("webhook:127.0.0.1:")
    assert (pager["sent"], pager["failed"], pager["retried"]) == (0, n, 0)
    assert pager["dead_lettered"] == n and pager["dead_letters"] == n and pager["queued"] == 0
    assert "HTTP 400" in pager["last_error"] and pager["last_error_at"] > 0
    assert len(rig.pager.requests) == n
    # The other channel is independent: its 503 was retried, then everything arrived.
    assert (audit["sent"], audit["failed"], audit["retried"], audit["dead_lettered"]) == (
        n, 1, 1, 0,
    )  # fmt: skip
    assert report["totals"]["dead_letters"] == n and report["totals"]["sent"] == n
    assert report["dead_letter_count"] == n and len(report["dead_letters"]) == n
    dead = report["dead_letters"]
    assert [d["dead_at"] for d in dead] == sorted((d["dead_at"] for d in dead), reverse=True)
    for d in dead:
        assert d["handler_key"] == "pager" and d["handler"] == pager["name"]
        assert d["deployment_id"] == "thumbnailer" and d["state"] == "firing"
        assert d["attempts"] == 1 and "HTTP 400" in d["last_error"]
    limited = rig.get("/api/v1/notifications?limit=1").json()
    assert len(limited["dead_letters"]) == 1 and limited["dead_letter_count"] == n
    assert limited["dead_letters"][0]["event_id"] == dead[0]["event_id"]  # the newest

    s = rig.metrics()
    p, a = pager["name"], audit["name"]
    for result, want in (("sent", 0), ("failed", n), ("retried", 0), ("dead_lettered", n),
                         ("dropped", 0)):  # fmt: skip
        assert s[("crackseg_alert_notifications_total",
                  frozenset({("handler", p), ("result", result)}))] == want, result  # fmt: skip
    assert s[("crackseg_alert_notifications_total",
              frozenset({("handler", a), ("result", "retried")}))] == 1  # fmt: skip
    assert s[("crackseg_alert_dead_letters", frozenset({("handler", p)}))] == n
    assert s[("crackseg_alert_dead_letters", frozenset({("handler", a)}))] == 0
    assert s[("crackseg_alert_queue_depth", frozenset({("handler", p)}))] == 0
    assert ("crackseg_alert_last_error_timestamp_seconds", frozenset({("handler", p)})) in s
    info = frozenset({("handler", p), ("key", "pager"), ("kind", "webhook")})
    assert s[("crackseg_alert_handler_info", info)] == 1

    # Re-queueing is a write: without (or with a wrong) token nothing moves.
    assert rig.post("/api/v1/notifications/retry", token=None).status_code == 401
    assert rig.post("/api/v1/notifications/retry", token="wrong").status_code == 401
    assert len(rig.monitor.dispatcher.dead_letters()) == n and len(rig.pager.requests) == n

    rig.pager.status = 200
    r = rig.post("/api/v1/notifications/retry", json={"handler_key": "pager"})
    assert r.status_code == 202 and r.json() == {"requeued": n, "handler_key": "pager"}
    assert rig.pager.wait_for(2 * n, 15.0) and rig.monitor.dispatcher.wait_idle(15.0)
    delivered = rig.pager.accepted()
    assert sorted(x.json()["event_id"] for x in delivered) == sorted(d["event_id"] for d in dead)
    for x in delivered:  # still signed, still with its headers
        ts, sig = x.headers["X-CrackSeg-Timestamp"], x.headers["X-CrackSeg-Signature"]
        assert verify_signature(HMAC_SECRET, x.body, ts, sig)
        assert x.headers["X-Api-Key"] == HEADER_SECRET and x.path.startswith("/hooks/")

    pager = _handler(after := rig.report(), "pager")
    assert pager["sent"] == n and pager["dead_letters"] == 0 and pager["dead_lettered"] == n
    assert after["dead_letters"] == [] and after["dead_letter_count"] == 0
    s = rig.metrics()
    assert s[("crackseg_alert_dead_letters", frozenset({("handler", p)}))] == 0
    assert s[("crackseg_alert_notifications_total",
              frozenset({("handler", p), ("result", "sent")}))] == n  # fmt: skip
    # Nothing left to re-queue: an empty body retries every handler, finding none.
    r = rig.post("/api/v1/notifications/retry")
    assert r.status_code == 202 and r.json() == {"requeued": 0, "handler_key": None}


def test_retry_requests_are_validated(rig: Rig) -> None:
    n = _dead_lettered(rig)
    r = rig.post("/api/v1/notifications/retry", json={"handler_key": "nobody"})
    assert r.status_code == 404 and r.json()["field"] == "handler_key"
    r = rig.post("/api/v1/notifications/retry", json={"handler_key": "pager", "all": True})
    assert r.status_code == 400 and r.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "unknown key; expected one of: handler_key",
        "field": "all",
    }
    assert r.headers["Content-Type"].startswith("application/problem+json")
    r = rig.post("/api/v1/notifications/retry", json={"handler_key": 7})
    assert r.status_code == 400 and r.json()["field"] == "handler_key"
    r = rig.post(
        "/api/v1/notifications/retry", data="pager", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    r = rig.get("/api/v1/notifications?limit=0")
    assert r.status_code == 400 and r.json()["field"] == "limit"
    # None of the refused requests re-queued anything.
    assert len(rig.monitor.dispatcher.dead_letters()) == n and len(rig.pager.requests) == n
    # Retrying for another handler leaves the pager's dead letters where they are.
    r = rig.post("/api/v1/notifications/retry", json={"handler_key": "audit"})
    assert r.status_code == 202 and r.json()["requeued"] == 0
    assert len(rig.monitor.dispatcher.dead_letters()) == n
    # The status page's button sends ``{}``: every handler. The receiver still refuses, so
    # each comes straight back to the dead-letter list after one more try.
    r = rig.post("/api/v1/notifications/retry", json={})
    assert r.status_code == 202 and r.json() == {"requeued": n, "handler_key": None}
    assert rig.pager.wait_for(2 * n, 15.0) and rig.monitor.dispatcher.wait_idle(15.0)
    assert len(rig.monitor.dispatcher.dead_letters()) == n
    assert _handler(rig.report(), "pager")["dead_lettered"] == 2 * n


def test_reads_can_be_protected_and_no_handler_means_an_empty_report() -> None:
    monitor = DeploymentHealthMonitor()
    try:
        with WebServer(monitor, token=TOKEN, protect_reads=True) as server:
            url = server.url + "/api/v1/notifications"
            assert requests.get(url, timeout=HTTP_TIMEOUT).status_code == 401
            r = requests.get(
                url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=HTTP_TIMEOUT
            )
            assert r.status_code == 200
            body = r.json()
            assert body["handlers"] == [] and body["dead_letters"] == []
            assert body["totals"]["sent"] == 0 and body["dead_letter_count"] == 0
    finally:
        monitor.close()
