"""Alert state in SQLite: survives reopening, and runs each notification only after its
state is committed, in order, even while another connection holds the file."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from crackseg.utils.deployment.history.alert_state import AlertRecord
from crackseg.utils.deployment.history.sqlite.alert_state import SQLiteAlertState
from crackseg.utils.deployment.models import AlertEvent
from tests.support.wait import wait_until


def _record(dep: str, notified: tuple[str, ...] = ("webhook:h",)) -> AlertRecord:
    ev = AlertEvent(dep, "health_check_failed", "critical", "firing", "down", None, None,
                    started_at=100.0, timestamp=160.0)  # fmt: skip
    return AlertRecord(ev, notified)


def test_callbacks_wait_for_the_commit_and_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    st = SQLiteAlertState(path)
    ran: list[str] = []
    done = threading.Event()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        st.save(_record("a"), after=lambda: ran.append("fire a"))
        st.save(_record("b"), after=lambda: ran.append("fire b"))
        st.delete("a", "health_check_failed", after=lambda: (ran.append("resolve a"), done.set()))
        time.sleep(0.3)
        assert ran == []  # nothing is sent before its state is on disk
        blocker.execute("COMMIT")
        assert done.wait(10)
        assert ran == ["fire a", "fire b", "resolve a"]
    finally:
        blocker.close()
        st.close()
    again = SQLiteAlertState(path)
    try:
        (rec,) = again.load()
        assert rec.firing.deployment_id == "b" and rec.firing.started_at == 100.0
        assert rec.notified == ("webhook:h",)
    finally:
        again.close()


def test_a_file_that_stays_locked_delays_notifications_but_never_silences_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.db"
    st = SQLiteAlertState(path, retry_interval=0.2)
    ran: list[str] = []
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        st.save(_record("a"), after=lambda: ran.append("fire a"))
        assert wait_until(lambda: ran == ["fire a"], 20, "the firing sent anyway")
        assert time.monotonic() - started >= 5.0  # tried for GIVE_UP_WAITING, then sent
        blocker.execute("COMMIT")
        assert st.flush(15)  # and the state is written once the file is free
        reopened = SQLiteAlertState(path)
        assert [r.firing.deployment_id for r in reopened.load()] == ["a"]
        reopened.close()
    finally:
        blocker.close()
        st.close()
