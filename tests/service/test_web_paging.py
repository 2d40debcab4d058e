"""API conventions on a real monitor checking a real server: every list is paged by an opaque
cursor with a bounded default page, times go in as Unix seconds or RFC 3339 and come out as
both."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.suppression import (
    MaintenanceSchedule,
    MaintenanceWindow,
    SilenceRegistry,
)
from crackseg.utils.deployment.service.cli.support import api_list
from crackseg.utils.deployment.service.web.app import WebServer
from crackseg.utils.deployment.service.web.public import MAX_DEPLOYMENTS, MAX_INCIDENTS
from tests.support.servers import HealthServer, health_server  # noqa: F401
from tests.support.wait import wait_until

TOKEN = "paging-token"


@pytest.fixture
def api(health_server: HealthServer) -> Iterator[tuple[str, DeploymentHealthMonitor]]:  # noqa: F811
    monitor = DeploymentHealthMonitor(failure_threshold=1, success_threshold=1)
    silences = SilenceRegistry()
    with WebServer(monitor, token=TOKEN, silences=silences) as server:
        yield server.url, monitor
    monitor.close()


def _get(url: str, **params: Any) -> tuple[int, Any]:
    r = requests.get(url, params=params, timeout=10)
    return r.status_code, r.json()


def _walk(url: str, key: str, **params: Any) -> list[list[Any]]:
    pages, cursor = [], None
    while True:
        status, body = _get(url, **params, **({"cursor": cursor} if cursor else {}))
        assert status == 200, body
        pages.append(body[key])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_deployments_page_by_cursor_with_a_bounded_default(
    api: tuple[str, DeploymentHealthMonitor],
    health_server: HealthServer,  # noqa: F811
) -> None:
    base, monitor = api
    ids = [f"d{i:03d}" for i in range(105)]
    for dep_id in ids:
        monitor.add_deployment_monitoring(dep_id, health_server.url("/health"), check_interval=3600)
    status, first = _get(f"{base}/api/v1/deployments")
    assert status == 200 and first["count"] == 100 and first["next_cursor"]
    pages = _walk(f"{base}/api/v1/deployments", "deployments", limit=40)
    assert [len(p) for p in pages] == [40, 40, 25]
    assert [d["deployment_id"] for p in pages for d in p] == ids
    status, err = _get(f"{base}/api/v1/deployments", limit=1001)
    assert (status, err["field"]) == (400, "limit")
    for bad in ("%%%", "bm90IGpzb24", "MQ"):  # not base64, not JSON, a number
        status, err = _get(f"{base}/api/v1/deployments", cursor=bad)
        assert (status, err["field"], err["title"]) == (400, "cursor", "Bad Request"), bad


def test_heartbeats_page_by_deployment_with_a_bounded_default(
    api: tuple[str, DeploymentHealthMonitor],
    health_server: HealthServer,  # noqa: F811
) -> None:
    base, monitor = api
    ids = [f"b{i:03d}" for i in range(103)]
    for dep_id in ids:
        monitor.add_deployment_monitoring(dep_id, health_server.url("/health"), check_interval=3600)
    status, first = _get(f"{base}/api/v1/heartbeats", limit=5)
    assert status == 200 and first["count"] == 100 and len(first["heartbeats"]) == 100
    assert first["next_cursor"] and first["limit"] == 5
    pages = _walk(f"{base}/api/v1/heartbeats", "heartbeats", limit=5, deployments=40)
    assert [len(p) for p in pages] == [40, 40, 23]
    assert [d for p in pages for d in p] == ids  # in id order, none twice, none left out
    status, err = _get(f"{base}/api/v1/heartbeats", deployments=1001)
    assert (status, err["field"]) == (400, "deployments")


def test_history_pages_back_in_time_and_takes_rfc3339(
    api: tuple[str, DeploymentHealthMonitor],
    health_server: HealthServer,  # noqa: F811
) -> None:
    base, monitor = api
    monitor.add_deployment_monitoring("h", health_server.url("/health"), check_interval=0.1)
    monitor.start_monitoring()
    try:
        assert monitor.wait_for_checks("h", 7, 20.0)
    finally:
        monitor.stop_monitoring()
    url = f"{base}/api/v1/deployments/h/history"
    _, everything = _get(url)
    stamps = [r["timestamp"] for r in everything["health"]]
    assert len(stamps) >= 7 and everything["next_cursor"] is None
    pages = _walk(url, "health", limit=3)
    assert [r["timestamp"] for p in reversed(pages) for r in p] == stamps  # no gap, no repeat
    assert all(len(p) == 3 for p in pages[:-1])

    row = everything["health"][2]
    when = datetime.fromisoformat(row["timestamp_rfc3339"])
    assert when.tzinfo is not None and abs(when.timestamp() - row["timestamp"]) < 0.001
    # RFC 3339 here has microseconds; the stored times more digits.
    since = datetime.fromtimestamp(stamps[1] - 2e-6, UTC).isoformat()
    until = datetime.fromtimestamp(stamps[3] + 2e-6, UTC).isoformat().replace("+00:00", "Z")
    _, window = _get(url, since=since, until=until)
    assert [r["timestamp"] for r in window["health"]] == stamps[1:4]
    _, unix = _get(url, since=repr(stamps[1]), until=repr(stamps[3]))
    assert unix["health"] == window["health"]
    for bad, why in (("yesterday", "RFC 3339"), ("2026-01-01T00:00:00", "offset")):
        status, err = _get(url, since=bad)
        assert (status, err["field"]) == (400, "since") and why in err["detail"], err


def test_silences_and_alert_history_page(
    api: tuple[str, DeploymentHealthMonitor],
    health_server: HealthServer,  # noqa: F811
) -> None:
    base, monitor = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    made = []
    for i in range(5):
        r = requests.post(f"{base}/api/v1/silences", headers=auth, timeout=10,
                          json={"deployment_id": f"s{i}", "duration_seconds": 60})  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["ends_at_rfc3339"].endswith("Z")
        made.append(r.json()["id"])
    pages = _walk(f"{base}/api/v1/silences", "silences", limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(s["id"] for p in pages for s in p) == sorted(made)

    monitor.add_deployment_monitoring("down", health_server.url("/fail"), check_interval=0.1)
    monitor.add_deployment_monitoring("up", health_server.url("/health"), check_interval=0.1)
    monitor.start_monitoring()
    try:
        assert monitor.wait_for_checks("down", 2, 20.0) and monitor.wait_for_checks("up", 1, 20.0)
        monitor.remove_deployment_monitoring("down")  # resolves its alert: two events
    finally:
        monitor.stop_monitoring()
    _, every = _get(f"{base}/api/v1/alerts/history")
    assert every["count"] >= 2 and every["next_cursor"] is None
    pages = _walk(f"{base}/api/v1/alerts/history", "events", limit=1)
    assert [e for p in reversed(pages) for e in p] == every["events"]
    assert every["events"][0]["started_at_rfc3339"].endswith("Z")
    _, incidents = _get(f"{base}/api/v1/incidents")
    assert incidents["count"] >= 1 and incidents["next_cursor"] is None
    pages = _walk(f"{base}/api/v1/incidents", "incidents", limit=1)
    assert [i for p in pages for i in p] == incidents["incidents"]


def test_the_cli_client_follows_every_page(
    api: tuple[str, DeploymentHealthMonitor],
    health_server: HealthServer,  # noqa: F811
) -> None:
    base, monitor = api
    ids = [f"c{i:04d}" for i in range(1_001)]  # one more than the largest page
    for dep_id in ids:
        monitor.add_deployment_monitoring(dep_id, health_server.url("/health"), check_interval=3600)
    rows = api_list(base, "/api/v1/deployments", "deployments")
    assert [r["deployment_id"] for r in rows] == ids


def test_maintenance_windows_page_in_schedule_order_with_a_bounded_holding(
    health_server: HealthServer,  # noqa: F811
) -> None:
    now = time.time()
    # Names are optional and may repeat: the page order is the schedule's.
    names = ["nightly", None, "nightly", "db", "eu-*", *(f"w{i:03d}" for i in range(100))]
    windows = [MaintenanceWindow(n or "", starts_at=now - 60 + i, ends_at=now + 3600)
               for i, n in enumerate(names)]  # fmt: skip
    windows[1] = MaintenanceWindow("", ("eu-*",), starts_at=now + 3600, ends_at=now + 7200)
    schedule = MaintenanceSchedule(windows)
    monitor = DeploymentHealthMonitor()
    ids = [f"dep{i:03d}" for i in range(105)] + ["eu-west"]
    for dep_id in ids:
        monitor.add_deployment_monitoring(dep_id, health_server.url("/health"), check_interval=3600)
    try:
        with WebServer(monitor, maintenance=lambda: schedule) as server:
            url = f"{server.url}/api/v1/maintenance"
            status, first = _get(url)
            assert status == 200 and first["count"] == 100 and first["next_cursor"]
            pages = _walk(url, "windows", limit=40)
            assert [len(p) for p in pages] == [40, 40, 25]
            got = [w for p in pages for w in p]
            assert [w["starts_at"] for w in got] == [w.starts_at for w in windows]
            everything = got[0]  # open, over every deployment: 106 held, 100 listed
            assert everything["active"] and everything["holding_count"] == len(ids)
            assert everything["holding"] == sorted(ids)[:100]
            closed = got[1]
            assert (closed["active"], closed["holding"], closed["holding_count"]) == (False, [], 0)
            status, err = _get(url, limit=1001)
            assert (status, err["field"]) == (400, "limit")
            status, err = _get(url, cursor="bm90IGpzb24")
            assert (status, err["field"]) == (400, "cursor")
    finally:
        monitor.close()


def test_the_public_view_is_one_bounded_document_that_says_when_capped(
    health_server: HealthServer,  # noqa: F811
) -> None:
    monitor = DeploymentHealthMonitor(failure_threshold=1)
    monitor.start_monitoring()  # added while it runs, each is checked at once
    total = MAX_DEPLOYMENTS + 5
    failing = [f"p{i:03d}" for i in range(MAX_INCIDENTS + 1)]  # one incident each
    for i in range(total):
        dep_id = f"p{i:03d}"
        path = "/fail" if dep_id in failing else "/health"
        monitor.add_deployment_monitoring(dep_id, health_server.url(path), check_interval=3600,
                                          public=True)  # fmt: skip
    # The last one is grouped: named groups come first, so it is listed, and p249 is not.
    monitor.add_deployment_monitoring("zz-grouped", health_server.url("/health"),
                                      check_interval=3600, public=True, group="Platform")  # fmt: skip
    try:
        wait_until(lambda: len(monitor.get_active_alerts()) >= len(failing), 30, "the alerts")
        with WebServer(monitor) as server:
            status, view = _get(f"{server.url}/status.json")
    finally:
        monitor.close()
    assert status == 200
    listed = [d["id"] for g in view["groups"] for d in g["deployments"]]
    assert len(listed) == MAX_DEPLOYMENTS and listed[0] == "zz-grouped"
    assert listed[1:] == [f"p{i:03d}" for i in range(MAX_DEPLOYMENTS - 1)]
    assert view["deployments_total"] == total + 1
    assert len(view["incidents"]) == MAX_INCIDENTS
    assert view["incidents_total"] == len(failing)
    assert view["capped"] == (
        f"listing the first {MAX_DEPLOYMENTS} of {total + 1} public deployments and the "
        f"newest {MAX_INCIDENTS} of {len(failing)} incidents"
    )
    assert view["overall"] == "unhealthy"
