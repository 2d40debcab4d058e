"""Keyset cursors: rows that arrive between two page reads neither repeat nor skip a row.

Alert history and incidents are read over HTTP from a real monitor on a SQLite store; dead
letters from a real dispatcher's report. Each list is read one page, then newer rows are
written, then the rest is read: the pages together hold exactly the rows of before."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from crackseg.utils.deployment.delivery.dispatcher import AlertDispatcher
from crackseg.utils.deployment.delivery.record import Notification
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import AlertEvent, DeploymentMetadata
from crackseg.utils.deployment.service.web.app import WebServer
from crackseg.utils.deployment.service.web.notifications import notification_report
from crackseg.utils.deployment.service.web.operations import decode_cursor

_clock = itertools.count()
BASE = time.time() - 3_600.0


def _event(dep: str, state: str = "firing", started: float | None = None) -> AlertEvent:
    # Distinct, increasing times: the order the store keeps is the order written.
    at = BASE + next(_clock)
    return AlertEvent(dep, "health_check_failed", "critical", state, "down", None, None,
                      started_at=at if started is None else started, timestamp=at)  # fmt: skip


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, DeploymentHealthMonitor, SQLiteStore]]:
    store = SQLiteStore(str(tmp_path / "history.db"))
    monitor = DeploymentHealthMonitor(store=store)
    with WebServer(monitor) as server:
        yield server.url, monitor, store
    monitor.close()


def _read(url: str, key: str, **params: Any) -> tuple[list[Any], str | None]:
    r = requests.get(url, params=params, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    return body[key], body["next_cursor"]


def _rest(url: str, key: str, cursor: str | None, **params: Any) -> list[list[Any]]:
    pages = []
    while cursor is not None:
        rows, cursor = _read(url, key, cursor=cursor, **params)
        pages.append(rows)
    return pages


def test_alert_history_pages_hold_still_while_events_arrive(
    served: tuple[str, DeploymentHealthMonitor, SQLiteStore],
) -> None:
    base, _, store = served
    for i in range(7):
        store.add_alert(_event(f"d{i}"))
    store.flush()
    url = f"{base}/api/v1/alerts/history"
    before, _ = _read(url, "events", limit=50)
    first, cursor = _read(url, "events", limit=3)
    assert first == before[-3:] and cursor
    for i in range(4):  # newer than every row read so far: an offset would shift by 4
        store.add_alert(_event(f"late{i}"))
    store.flush()
    pages = [first, *_rest(url, "events", cursor, limit=3)]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [e for p in reversed(pages) for e in p] == before  # none twice, none skipped
    status = requests.get(url, params={"cursor": "MQ"}, timeout=10).status_code
    assert status == 400  # an offset cursor of before is refused, not misread


def test_incident_pages_hold_still_while_incidents_open(
    served: tuple[str, DeploymentHealthMonitor, SQLiteStore],
) -> None:
    base, _, store = served
    for i in range(5):
        fired = _event(f"i{i}")
        store.add_alert(fired)
        store.add_alert(_event(f"i{i}", "resolved", started=fired.started_at))
    store.flush()
    url = f"{base}/api/v1/incidents"
    before, _ = _read(url, "incidents", limit=50)
    first, cursor = _read(url, "incidents", limit=2)
    assert len(before) == 5 and [i["deployment_id"] for i in first] == ["i4", "i3"]
    for i in range(3):
        store.add_alert(_event(f"new{i}"))
    store.flush()
    pages = [first, *_rest(url, "incidents", cursor, limit=2)]
    ids = [i["deployment_id"] for p in pages for i in p]
    assert ids == [i["deployment_id"] for i in before] == ["i4", "i3", "i2", "i1", "i0"]


def test_dead_letter_pages_hold_still_while_letters_die() -> None:
    dispatcher = AlertDispatcher()

    def die(dep: str) -> None:
        at = BASE + next(_clock)
        dispatcher.dead_letter(Notification("hook", "health_check_failed",
                                            DeploymentMetadata(deployment_id=dep), {},
                                            created_at=at, dead_at=at))  # fmt: skip

    try:
        for i in range(5):
            die(f"x{i}")
        first = notification_report(dispatcher, 2)
        assert [d["deployment_id"] for d in first["dead_letters"]] == ["x4", "x3"]
        for i in range(3):
            die(f"late{i}")
        seen = [d["deployment_id"] for d in first["dead_letters"]]
        cursor = first["next_cursor"]
        while cursor is not None:
            page = notification_report(dispatcher, 2, decode_cursor(cursor))
            seen += [d["deployment_id"] for d in page["dead_letters"]]
            cursor = page["next_cursor"]
        assert seen == ["x4", "x3", "x2", "x1", "x0"]
    finally:
        dispatcher.close()
