"""AlertDispatcher's own rules, with handlers written against the public interface."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from crackseg.utils.deployment.delivery import (
    AlertDispatcher,
    AlertHandler,
    LoggingAlertHandler,
    RetryPolicy,
)
from crackseg.utils.deployment.errors import ConfigError, NotifierError
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.receivers import wait_until

FAST = RetryPolicy(initial=0.01, max_delay=0.05, max_attempts=3)


class Recorder(AlertHandler):
    """Records what it is given; fails the first ``fail`` tries of each event."""

    kind = "recorder"

    def __init__(self, fail: int = 0, permanent: bool = False, key: str | None = None) -> None:
        self.fail, self.permanent, self.key = fail, permanent, key
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.tries: dict[str, int] = {}
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        self.entered.set()
        assert self.gate.wait(10)
        n = self.tries[kwargs["event_id"]] = self.tries.get(kwargs["event_id"], 0) + 1
        if n <= self.fail:
            raise NotifierError(f"try {n} refused", permanent=self.permanent)
        self.seen.append((metadata.deployment_id, kwargs))


def _send(d: AlertDispatcher, dep: str, state: str = "firing", **kw: Any) -> None:
    d.dispatch("high_cpu_usage", DeploymentMetadata(dep), state=state, severity="warning", **kw)


def test_retry_policy_backs_off_exponentially_with_bounded_jitter() -> None:
    p = RetryPolicy(initial=1.0, max_delay=30.0, jitter=0.5)
    rng = random.Random(1)
    for attempt, raw in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (9, 30.0)]:
        delays = [p.delay(attempt, rng) for _ in range(50)]
        assert all(raw * 0.5 <= x <= raw for x in delays)
        assert len(set(delays)) > 1


def test_event_id_shared_across_handlers_and_sequence_per_deployment() -> None:
    a, b = Recorder(), Recorder()
    d = AlertDispatcher(retry=FAST)
    d.add_handler(a)
    d.add_handler(b)
    try:
        for dep in ["x", "y", "x", "x"]:
            _send(d, dep)
        assert d.wait_idle(5)
    finally:
        d.close()
    assert [k["event_id"] for _, k in a.seen] == [k["event_id"] for _, k in b.seen]
    assert [(dep, k["sequence"]) for dep, k in a.seen] == [("x", 1), ("y", 1), ("x", 2), ("x", 3)]


def test_retries_then_dead_letter_after_max_attempts() -> None:
    flaky, broken = Recorder(fail=2), Recorder(fail=99)
    d = AlertDispatcher(retry=FAST)
    d.add_handler(flaky)
    d.add_handler(broken)
    try:
        _send(d, "api")
        assert d.wait_idle(5)
        stats = d.stats()
    finally:
        d.close()
    assert len(flaky.seen) == 1 and not broken.seen
    assert stats["Recorder"] == stats["Recorder"] | {"sent": 1, "failed": 2, "retried": 2}
    assert stats["Recorder#1"]["dead_lettered"] == 1 and stats["Recorder#1"]["failed"] == 3
    assert stats["Recorder#1"]["last_error"] == "NotifierError: try 3 refused"
    (dead,) = d.dead_letters()
    assert dead["handler_key"] == "recorder#2" and dead["attempts"] == 3


def test_permanent_error_is_not_retried() -> None:
    h = Recorder(fail=1, permanent=True)
    d = AlertDispatcher(retry=FAST)
    d.add_handler(h)
    try:
        _send(d, "api")
        assert d.wait_idle(5)
    finally:
        d.close()
    assert sum(h.tries.values()) == 1 and len(d.dead_letters()) == 1


def test_dead_letter_list_is_bounded() -> None:
    d = AlertDispatcher(retry=FAST, dead_letter_limit=3)
    d.add_handler(Recorder(fail=99, permanent=True))
    try:
        for i in range(5):
            _send(d, f"d{i}")
        assert d.wait_idle(5)
        assert [x["deployment_id"] for x in d.dead_letters()] == ["d2", "d3", "d4"]
        assert next(iter(d.stats().values()))["dead_lettered"] == 5
    finally:
        d.close()


def test_a_full_queue_coalesces_and_never_drops_a_resolve_or_a_first_firing() -> None:
    h = Recorder()
    h.gate.clear()
    d = AlertDispatcher(queue_size=3, retry=FAST)
    d.add_handler(h)
    try:
        _send(d, "api", message="m0", started_at=0.0)
        assert h.entered.wait(5)  # in the handler's hands: never touched
        _send(d, "api", message="a-fire", started_at=1.0)
        _send(d, "api", message="b-fire", started_at=2.0)
        _send(d, "api", message="b-repeat", started_at=2.0, repeat=True)
        _send(d, "api", "resolved", message="a-resolve", started_at=1.0)  # cancels a-fire
        _send(d, "api", message="c-fire", started_at=3.0)  # pushes out b's repeat
        _send(d, "api", "resolved", message="b-resolve", started_at=2.0)  # cancels b-fire
        for i in range(6):  # first firings and resolves go beyond the size, not out
            _send(d, "api", "resolved" if i % 2 else "firing", message=f"x{i}", started_at=10.0 + i)
        (stats,) = d.stats().values()
        h.gate.set()
        assert d.wait_idle(5)
    finally:
        d.close()
    assert [k["message"] for _, k in h.seen] == [
        "m0", "c-fire", "x0", "x1", "x2", "x3", "x4", "x5"
    ]  # fmt: skip
    assert stats["coalesced"] == 5 and stats["dropped"] == 0 and stats["queued"] == 8


def test_a_blocked_handler_does_not_hold_up_another() -> None:
    stuck, fine = Recorder(), Recorder()
    stuck.gate.clear()
    d = AlertDispatcher(retry=FAST)
    d.add_handler(stuck)
    d.add_handler(fine)
    try:
        _send(d, "api")
        assert wait_until(lambda: len(fine.seen) == 1, 5)
        assert not d.wait_idle(0.05)
        stuck.gate.set()
        assert d.wait_idle(5)
    finally:
        d.close()


def test_resolved_notices_skip_handlers_that_do_not_want_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet = Recorder()
    quiet.send_resolved = False
    loud = Recorder()
    d = AlertDispatcher(retry=FAST)
    d.add_handler(quiet)
    d.add_handler(loud)
    d.add_handler(LoggingAlertHandler(send_resolved=True))
    try:
        with caplog.at_level("INFO", logger="crackseg.alerts"):
            _send(d, "api", value=97.5, threshold=90.0)
            _send(d, "api", state="resolved")
            assert d.wait_idle(5)
    finally:
        d.close()
    assert [k["state"] for _, k in quiet.seen] == ["firing"]
    assert [k["state"] for _, k in loud.seen] == ["firing", "resolved"]
    assert "[FIRING] high_cpu_usage deployment=api severity=warning value=97.5" in caplog.text
    assert "[RESOLVED] high_cpu_usage deployment=api" in caplog.text


def test_keys_are_unique_and_default_to_kind_and_target() -> None:
    d = AlertDispatcher()
    a, b, c = Recorder(), Recorder(), Recorder(key="mine")
    try:
        for h in (a, b, c):
            d.add_handler(h)
        assert [d.handler_key(h) for h in (a, b, c)] == ["recorder", "recorder#2", "mine"]
        with pytest.raises(ConfigError, match="already in use"):
            d.add_handler(Recorder(key="mine"))
        d.remove_handler(a)
        assert d.handlers == [b, c]
        d.add_handler(Recorder())
        assert sorted(str(d.handler_key(h)) for h in d.handlers) == [
            "mine",
            "recorder",
            "recorder#2",
        ]
    finally:
        d.close()
    assert d.handlers == []


def test_sequence_order_is_delivery_order_with_concurrent_dispatchers(tmp_path: Any) -> None:
    h = Recorder()
    d = AlertDispatcher(retry=FAST, outbox_path=tmp_path / "outbox.db")
    d.add_handler(h)

    def burst() -> None:
        for _ in range(100):
            _send(d, "api")

    threads = [threading.Thread(target=burst) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert d.wait_idle(30)
    finally:
        d.close()
    assert [k["sequence"] for _, k in h.seen] == list(range(1, 401))
