"""The durable outbox: rows survive a kill -9 and are delivered by the next dispatcher."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.delivery import (
    AlertDispatcher,
    AlertHandler,
    RetryPolicy,
    WebhookHandler,
)
from crackseg.utils.deployment.delivery.outbox import Outbox
from crackseg.utils.deployment.delivery.record import Notification
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.receivers import HttpReceiver

PATIENT = RetryPolicy(initial=0.02, max_delay=0.2)

CHILD = """
import sys, time
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.delivery import (
    AlertDispatcher,
    AlertHandler,
    RetryPolicy,
    WebhookHandler,
)
url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = AlertDispatcher(outbox=path, retry=RetryPolicy(initial=0.05, max_delay=0.2))
d.add_handler(WebhookHandler(url, key="ops-hook"))
for i in range(n):
    d.dispatch("health_check_failed", DeploymentMetadata(f"dep-{i % 2}", version="v7"),
               state="firing", severity="critical", message=f"n{i}")
assert d.flush_outbox(10)  # dispatch never waits for the disk; the writer commits at once
print("dispatched", flush=True)
time.sleep(120)
"""


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.close()


def _entry(key: str, dep: str, event: str, seq: int) -> Notification:
    kwargs = {"state": "firing", "event_id": event, "sequence": seq}
    return Notification(key, "high_cpu_usage", DeploymentMetadata(dep), kwargs)


def test_outbox_rows_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, dead_limit=2)
    assert [box.next_sequence("a") for _ in range(3)] == [1, 2, 3]
    ids = box.add([_entry("k1", "a", f"e{i}", i) for i in range(5)] + [_entry("k2", "b", "x", 1)])
    box.delete(ids[0])
    box.record_attempt(ids[1], 3, "HTTP 503")
    for rid in ids[2:5]:
        box.mark_dead(rid, 6, "gave up", 1.0)
    box.close()
    box = Outbox(path, dead_limit=2)
    try:
        assert [(e.event_id, e.attempts, e.last_error) for e in box.pending("k1")] == [
            ("e1", 3, "HTTP 503")
        ]
        assert [e.event_id for e in box.dead()] == ["e4", "e3"]  # bounded, newest first
        assert box.counts() == {"pending": 2, "dead": 2}
        # Numbering goes on after the highest number stored (the rows carry 0..4 and 1).
        assert box.next_sequence("a") == 5 and box.next_sequence("b") == 2
        assert box.delete_handler("k2") == 1
    finally:
        box.close()


def test_kill_9_with_undelivered_notifications_then_delivered_on_start(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    path = tmp_path / "outbox.db"
    url = receiver.url + "/hook"
    receiver.down()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(path), "10"],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"dispatched"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert not receiver.accepted()
    box = Outbox(path)
    assert box.counts()["pending"] == 10
    receiver.up()
    other = WebhookHandler(url, key="someone-else")
    d = AlertDispatcher(outbox=box, retry=PATIENT)
    d.add_handler(other)
    d.add_handler(WebhookHandler(url, key="ops-hook"))
    try:
        assert d.wait_idle(20)
        got = [r.json() for r in receiver.accepted()]
        assert sorted(g["message"] for g in got) == sorted(f"n{i}" for i in range(10))
        for dep in ("dep-0", "dep-1"):
            assert [g["sequence"] for g in got if g["deployment_id"] == dep] == [1, 2, 3, 4, 5]
        assert {g["metadata"]["version"] for g in got} == {"v7"}
        assert box.counts() == {"pending": 0, "dead": 0}
        # The sequence goes on from where the killed process stopped.
        d.remove_handler(other)
        d.dispatch("deployment_success", DeploymentMetadata("dep-0"), state="firing")
        assert d.wait_idle(10)
        assert receiver.accepted()[-1].json()["sequence"] == 6
    finally:
        d.close()
        box.close()


def test_close_keeps_undelivered_rows_for_next_start(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    path = tmp_path / "outbox.db"
    receiver.status = 503
    d = AlertDispatcher(outbox_path=path, retry=PATIENT)
    d.add_handler(WebhookHandler(receiver.url))  # default key: webhook-0
    d.dispatch("high_cpu_usage", DeploymentMetadata("api"), state="firing", value=97.0)
    d.dispatch("high_cpu_usage", DeploymentMetadata("api"), state="resolved", value=20.0)
    assert receiver.wait_for(2)
    d.close()
    receiver.status = 200
    d2 = AlertDispatcher(outbox_path=path, retry=PATIENT)
    d2.add_handler(WebhookHandler(receiver.url))
    try:
        assert d2.wait_idle(10)
        states = [r.json()["state"] for r in receiver.accepted()]
        assert states == ["firing", "resolved"]
        assert receiver.accepted()[0].json()["value"] == 97.0
    finally:
        d2.close()


def test_dead_letters_persist_and_can_be_retried(tmp_path: Path, receiver: HttpReceiver) -> None:
    path = tmp_path / "outbox.db"
    receiver.status = 422
    d = AlertDispatcher(outbox_path=path, retry=PATIENT)
    d.add_handler(WebhookHandler(receiver.url, key="hook"))
    d.dispatch("deployment_failure", DeploymentMetadata("api"), state="firing")
    assert d.wait_idle(10)
    d.close()
    d2 = AlertDispatcher(outbox_path=path, retry=PATIENT)
    d2.add_handler(WebhookHandler(receiver.url, key="hook"))
    try:
        (dead,) = d2.dead_letters()
        assert dead["alert_type"] == "deployment_failure" and "HTTP 422" in dead["last_error"]
        receiver.status = 200
        assert d2.retry_dead_letters() == 1
        assert d2.wait_idle(10)
        assert d2.dead_letters() == [] and d2.outbox is not None
        assert d2.outbox.counts() == {"pending": 0, "dead": 0}
        assert receiver.accepted()[-1].json()["alert_type"] == "deployment_failure"
    finally:
        d2.close()


def test_wal_stays_bounded_under_steady_traffic(tmp_path: Path) -> None:
    class Null(AlertHandler):
        def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kw: Any) -> None:
            pass

    path = tmp_path / "outbox.db"
    d = AlertDispatcher(outbox_path=path, queue_size=5000)
    d.add_handler(Null())
    try:
        for i in range(3000):
            d.dispatch("high_cpu_usage", DeploymentMetadata(f"d{i % 5}"), state="firing")
            if i % 100 == 99:
                assert d.wait_idle(10)
        assert d.outbox is not None and d.outbox.counts() == {"pending": 0, "dead": 0}
        # Without checkpoints these 6000 transactions leave a WAL of about 16 MB.
        assert (tmp_path / "outbox.db-wal").stat().st_size < 8 * 1024 * 1024
    finally:
        d.close()


def test_reload_keeps_undelivered_rows_for_the_same_key(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    receiver.status = 503
    d = AlertDispatcher(outbox_path=tmp_path / "outbox.db", retry=PATIENT)
    old, gone = WebhookHandler(receiver.url, key="ops"), WebhookHandler(receiver.url, key="gone")
    d.add_handler(old)
    d.add_handler(gone)
    try:
        d.dispatch("high_error_rate", DeploymentMetadata("api"), state="firing")
        assert receiver.wait_for(2)
        d.remove_handler(old)  # a config reload: the new handler keeps the key
        d.remove_handler(gone, forget=True)  # really gone: its notices go with it
        assert d.outbox is not None
        assert [e.handler_key for e in d.outbox.pending()] == ["ops"]
        receiver.status = 200
        d.add_handler(WebhookHandler(receiver.url, key="ops"))
        assert d.wait_idle(10)
        assert [r.json()["alert_type"] for r in receiver.accepted()] == ["high_error_rate"]
        assert d.outbox.counts()["pending"] == 0
    finally:
        d.close()


def test_numbering_goes_on_after_a_restart_even_for_rows_never_written(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    path = tmp_path / "outbox.db"
    d = AlertDispatcher(outbox_path=path, retry=PATIENT)
    d.add_handler(WebhookHandler(receiver.url, key="hook"))
    for _ in range(5):
        d.dispatch("high_cpu_usage", DeploymentMetadata("api"), state="firing")
    assert d.wait_idle(10)
    d.close()
    d = AlertDispatcher(outbox_path=path, retry=PATIENT)
    d.add_handler(WebhookHandler(receiver.url, key="hook"))
    try:
        d.dispatch("high_cpu_usage", DeploymentMetadata("api"), state="firing")
        assert d.wait_idle(10)
        assert [r.json()["sequence"] for r in receiver.accepted()] == [1, 2, 3, 4, 5, 6]
    finally:
        d.close()
