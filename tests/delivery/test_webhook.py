"""Webhook delivery against a real HTTP receiver: signatures, outages, permanent failures."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator

import pytest

from crackseg.utils.deployment.delivery import AlertDispatcher, RetryPolicy, WebhookHandler
from crackseg.utils.deployment.delivery.channels.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.receivers import HttpReceiver, Recorded, wait_until

FAST = RetryPolicy(initial=0.02, max_delay=0.2, max_attempts=6)
PATIENT = RetryPolicy(initial=0.02, max_delay=0.2)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.close()


def _dispatcher(policy: RetryPolicy = FAST, **kwargs: object) -> AlertDispatcher:
    return AlertDispatcher(retry=policy, **kwargs)  # type: ignore[arg-type]


def _fire(d: AlertDispatcher, dep: str, n: int = 0, **kw: object) -> None:
    d.dispatch(
        "health_check_failed",
        DeploymentMetadata(dep),
        severity="critical",
        message=f"check {n} failed",
        value=None,
        threshold=None,
        state="firing",
        firing=True,
        resolved=False,
        **kw,
    )


def test_signed_payload_verifies(receiver: HttpReceiver) -> None:
    d = _dispatcher()
    d.add_handler(WebhookHandler(receiver.url + "/hook", secret="s3cret", headers={"X-Env": "t"}))
    meta = DeploymentMetadata("api", health_check_url="http://10.0.0.5/health?token=HCTOKEN")
    try:
        d.dispatch("health_check_failed", meta, severity="critical", state="firing")
        assert d.wait_idle(10)
    finally:
        d.close()
    (req,) = receiver.accepted()
    ts, sig = req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER]
    expected = hmac.new(b"s3cret", ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    assert sig == f"sha256={expected}"
    assert verify_signature("s3cret", req.body, ts, sig)
    assert not verify_signature("s3cret", req.body + b" ", ts, sig)
    assert not verify_signature("other", req.body, ts, sig)
    assert not verify_signature("s3cret", req.body, str(int(ts) - 3600), sig)
    assert req.headers["X-Env"] == "t"
    body = req.json()
    assert body["deployment_id"] == "api" and body["state"] == "firing"
    assert body["alert_type"] == "health_check_failed" and body["severity"] == "critical"
    assert body["sequence"] == 1 and len(body["event_id"]) == 32
    assert req.headers["X-CrackSeg-Event-Id"] == body["event_id"]
    assert body["metadata"]["deployment_id"] == "api"
    assert body["metadata"]["health_check_url"] == "http://10.0.0.5/health?token=***"


def test_outage_then_recovery_delivers_everything_in_order(receiver: HttpReceiver) -> None:
    d = _dispatcher(PATIENT)
    d.add_handler(WebhookHandler(receiver.url + "/hook", timeout=5))
    deployments = ["a", "b", "c"]
    try:
        receiver.down()
        for n in range(10):
            for dep in deployments:
                _fire(d, dep, n)
        # Every deployment's head has been refused at least twice before the receiver returns.
        assert wait_until(lambda: d.stats()["webhook:" + receiver.url[7:]]["failed"] >= 6, 20)
        assert not d.wait_idle(0.1)
        receiver.up()
        assert d.wait_idle(30)
        stats = next(iter(d.stats().values()))
    finally:
        d.close()
    got = [r.json() for r in receiver.accepted()]
    assert len({g["event_id"] for g in got}) == 30
    for dep in deployments:
        seqs = [g["sequence"] for g in got if g["deployment_id"] == dep]
        msgs = [g["message"] for g in got if g["deployment_id"] == dep]
        assert seqs == list(range(1, 11)), seqs
        assert msgs == [f"check {n} failed" for n in range(10)]
    assert stats["sent"] == 30 and stats["dead_lettered"] == 0 and stats["retried"] >= 6


def test_5xx_and_429_are_retried(receiver: HttpReceiver) -> None:
    receiver.statuses = [503, 429, 500]
    d = _dispatcher()
    d.add_handler(WebhookHandler(receiver.url))
    try:
        _fire(d, "api")
        assert d.wait_idle(10)
        (stats,) = d.stats().values()
    finally:
        d.close()
    assert [r.status for r in receiver.requests] == [503, 429, 500, 200]
    assert stats["sent"] == 1 and stats["failed"] == 3 and stats["retried"] == 3
    assert "HTTP 500" in stats["last_error"]


def test_400_is_permanent_and_dead_lettered_without_retry(receiver: HttpReceiver) -> None:
    receiver.status = 400
    d = _dispatcher()
    d.add_handler(WebhookHandler(receiver.url))
    try:
        _fire(d, "api")
        assert d.wait_idle(10)
        (stats,) = d.stats().values()
        dead = d.dead_letters()
    finally:
        d.close()
    assert len(receiver.requests) == 1
    assert stats["retried"] == 0 and stats["dead_lettered"] == 1 and stats["sent"] == 0
    assert stats["dead_letters"] == 1
    assert len(dead) == 1 and dead[0]["attempts"] == 1 and dead[0]["deployment_id"] == "api"
    assert "HTTP 400" in dead[0]["last_error"]


def test_a_retry_holds_back_only_its_own_deployment(receiver: HttpReceiver) -> None:
    blocked = {"a"}

    def respond(req: Recorded) -> int:
        return 503 if req.json()["deployment_id"] in blocked else 200

    receiver.responder = respond
    d = _dispatcher(PATIENT)
    d.add_handler(WebhookHandler(receiver.url))
    try:
        _fire(d, "a", 1)
        _fire(d, "b", 1)
        _fire(d, "a", 2)
        _fire(d, "b", 2)
        assert wait_until(lambda: len(receiver.accepted()) == 2, 10)
        assert [r.json()["deployment_id"] for r in receiver.accepted()] == ["b", "b"]
        # "a" 2 is never tried while "a" 1 waits for its retry.
        assert {r.json()["message"] for r in receiver.requests if r.status == 503} == {
            "check 1 failed"
        }
        blocked.clear()
        assert d.wait_idle(10)
    finally:
        d.close()
    a_msgs = [r.json()["message"] for r in receiver.accepted() if r.json()["deployment_id"] == "a"]
    assert a_msgs == ["check 1 failed", "check 2 failed"]


def test_no_secret_in_logs_stats_or_repr(
    receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = receiver.url + "/hooks/T0KEN-IN-PATH?token=QUERYSECRET"
    handler = WebhookHandler(
        url, secret="HMACSECRET", headers={"Authorization": "Bearer HDRSECRET"}
    )
    d = _dispatcher(RetryPolicy(initial=0.01, max_delay=0.01, max_attempts=2))
    d.add_handler(handler)
    try:
        receiver.down()
        _fire(d, "api", 1)
        assert d.wait_idle(10)
        receiver.up()
        receiver.status = 401
        _fire(d, "api", 2)
        assert d.wait_idle(10)
        exported = json.dumps([d.stats(), d.dead_letters()]) + repr(handler) + handler.name
    finally:
        d.close()
    assert len(d.dead_letters()) == 2
    assert receiver.requests[-1].headers["Authorization"] == "Bearer HDRSECRET"
    text = caplog.text + exported
    assert "dead-lettered" in caplog.text and "HTTP 401" in text
    for secret in ("T0KEN-IN-PATH", "QUERYSECRET", "HMACSECRET", "HDRSECRET"):
        assert secret not in text


def test_redirect_is_not_followed(receiver: HttpReceiver) -> None:
    receiver.status = 307
    d = _dispatcher()
    d.add_handler(WebhookHandler(receiver.url))
    try:
        _fire(d, "api")
        assert d.wait_idle(10)
    finally:
        d.close()
    assert len(receiver.requests) == 1 and len(d.dead_letters()) == 1


def test_a_receiver_that_never_answers_times_out(receiver: HttpReceiver) -> None:
    receiver.delay = 30
    d = _dispatcher(RetryPolicy(initial=0.01, max_delay=0.01, max_attempts=2))
    d.add_handler(WebhookHandler(receiver.url, timeout=0.3))
    started = time.monotonic()
    try:
        _fire(d, "api")
        assert d.wait_idle(15)
    finally:
        d.close()
    assert time.monotonic() - started < 10  # two tries of 0.3 s, with a wide margin
    (dead,) = d.dead_letters()
    assert dead["attempts"] == 2 and "timed out after 0.3 s" in dead["last_error"]
