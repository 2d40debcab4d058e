"""Delivery that outlasts an outage: retry by age, order per deployment through retries and
dead letters, permanent errors at once, outbox writes that never hold up the caller."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.delivery import AlertDispatcher, RetryPolicy, WebhookHandler
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.receivers import HttpReceiver, wait_until


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.close()


def _send(d: AlertDispatcher, dep: str, message: str, state: str = "firing", **kw: object) -> None:
    d.dispatch("high_error_rate", DeploymentMetadata(dep), state=state, message=message, **kw)


def _by_dep(receiver: HttpReceiver) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in receiver.accepted():
        body = r.json()
        out.setdefault(body["deployment_id"], []).append(body["message"])
    return out


def test_a_receiver_down_longer_than_the_old_give_up_loses_nothing_with_the_defaults(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    # The old policy gave up after six tries (15-31 s); this outage lasts 35 s.
    receiver.down()
    d = AlertDispatcher(outbox=tmp_path / "outbox.db")  # default RetryPolicy()
    d.add_handler(WebhookHandler(receiver.url + "/hook"))
    try:
        for i in range(12):
            _send(d, f"dep-{i % 3}", f"n{i}")
        time.sleep(35)
        assert d.dead_letters() == []
        receiver.up()
        # Back: everything queued arrives within about max_delay (30 s), plus margin.
        assert wait_until(lambda: len(receiver.accepted()) == 12, 45, 0.2)
        got = _by_dep(receiver)
        for k in range(3):
            assert got[f"dep-{k}"] == [f"n{i}" for i in range(12) if i % 3 == k]
        assert d.wait_idle(10) and d.dead_letters() == []
        assert d.outbox is not None and d.outbox.counts() == {"pending": 0, "dead": 0}
    finally:
        d.close()


def test_max_age_dead_letters_and_a_permanent_error_does_at_once(receiver: HttpReceiver) -> None:
    receiver.down()
    d = AlertDispatcher(retry=RetryPolicy(initial=0.05, max_delay=0.1, max_age=0.6))
    d.add_handler(WebhookHandler(receiver.url))
    try:
        started = time.monotonic()
        _send(d, "api", "old")
        assert wait_until(lambda: d.dead_letters(), 10, 0.02)
        assert time.monotonic() - started >= 0.6
        (dead,) = d.dead_letters()
        assert dead["attempts"] > 1 and "unreachable" in dead["last_error"]
        receiver.up()
        receiver.statuses = [400]
        _send(d, "db", "bad request")
        assert wait_until(lambda: len(d.dead_letters()) == 2, 5, 0.02)
        assert d.dead_letters()[1]["attempts"] == 1  # no second try for a 400
        receiver.statuses = [429, 200]  # 429 is "try later", not permanent
        _send(d, "web", "slow down")
        assert wait_until(lambda: _by_dep(receiver).get("web") == ["slow down"], 5, 0.02)
    finally:
        d.close()


def test_a_retried_dead_letter_keeps_its_place_and_never_undoes_a_newer_state(
    receiver: HttpReceiver,
) -> None:
    d = AlertDispatcher(retry=RetryPolicy(initial=0.05, max_delay=0.1))
    d.add_handler(WebhookHandler(receiver.url))
    try:
        receiver.statuses = [422]  # the first firing of "api" is refused for good
        _send(d, "api", "api fires", started_at=1.0)
        assert wait_until(lambda: len(d.dead_letters()) == 1, 5, 0.02)
        _send(d, "api", "api resolves", "resolved", started_at=1.0)
        assert wait_until(lambda: _by_dep(receiver).get("api") == ["api resolves"], 5, 0.02)
        # Its resolve already went out: sending the old firing now would undo it.
        assert d.retry_dead_letters() == 0 and d.dead_letters() == []
        receiver.statuses = [422]
        _send(d, "db", "db first", started_at=2.0)
        assert wait_until(lambda: len(d.dead_letters()) == 1, 5, 0.02)
        receiver.status = 503  # later notifications of db queue up behind a failing head
        _send(d, "db", "db second", started_at=3.0)
        _send(d, "db", "db third", started_at=4.0)
        assert receiver.wait_for(len(receiver.requests) + 1)
        receiver.status = 200
        assert d.retry_dead_letters() == 1
        assert wait_until(lambda: len(_by_dep(receiver).get("db", [])) == 3, 10, 0.02)
        assert _by_dep(receiver)["db"] == ["db first", "db second", "db third"]
    finally:
        d.close()


def test_a_locked_outbox_never_holds_up_dispatch(tmp_path: Path, receiver: HttpReceiver) -> None:
    path = tmp_path / "outbox.db"
    d = AlertDispatcher(outbox=path, retry=RetryPolicy(initial=0.05, max_delay=0.2))
    d.add_handler(WebhookHandler(receiver.url))
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        assert d.flush_outbox()
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        slowest = 0.0
        for i in range(50):
            t0 = time.perf_counter()
            _send(d, f"dep-{i % 5}", f"n{i}")
            slowest = max(slowest, time.perf_counter() - t0)
        assert slowest < 0.05, f"dispatch took {slowest * 1000:.1f} ms with the outbox locked"
        assert wait_until(lambda: len(receiver.accepted()) == 50, 10, 0.02)  # delivery goes on
        receiver.status = 503
        _send(d, "late", "queued while locked")
        time.sleep(0.2)
        blocker.execute("COMMIT")
        assert d.flush_outbox(15)
        assert d.outbox is not None
        assert [e.kwargs["message"] for e in d.outbox.pending()] == ["queued while locked"]
    finally:
        blocker.close()
        d.close()


def test_a_locked_outbox_delays_no_check_while_alerts_fire(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor

    service = HttpReceiver().start()
    path = tmp_path / "outbox.db"
    d = AlertDispatcher(outbox=path, retry=RetryPolicy(initial=0.05, max_delay=0.2))
    m = DeploymentHealthMonitor(
        failure_threshold=1, success_threshold=1, flap_max_changes=None, dispatcher=d
    )
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        m.add_alert_handler(WebhookHandler(receiver.url))
        for i in range(5):
            m.add_deployment_monitoring(f"d{i}", service.url + "/health", check_interval=0.1)
        m.start_monitoring()
        assert m.wait_for_checks("d0", 3)
        assert d.flush_outbox()
        blocker.execute("BEGIN IMMEDIATE")  # held for 5 s while every deployment flips
        locked_at = time.time()
        while time.time() - locked_at < 5.0:
            service.status = 503 if service.status == 200 else 200
            time.sleep(0.25)
        blocker.execute("COMMIT")
        fired = [e for e in m.get_alert_history(since=locked_at) if e.state == "firing"]
        assert len(fired) >= 20  # alerts did fire (and resolve) all along
        for i in range(5):
            stamps = [r.timestamp for r in m.get_health_history(f"d{i}", since=locked_at)]
            gaps = [b - a for a, b in itertools.pairwise(stamps)]
            # 0.1 s interval: a check held up by the outbox would leave a gap of seconds.
            assert len(stamps) >= 30 and max(gaps) < 0.6, (i, len(stamps), max(gaps))
        assert wait_until(lambda: len(receiver.accepted()) >= len(fired), 15, 0.1)
    finally:
        blocker.close()
        m.close()
        service.close()
