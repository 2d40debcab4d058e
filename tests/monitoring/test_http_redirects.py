"""Followed redirects keep credentials on their origin; a Location's secret never shows."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests.support.hostile import HostileServer
from tests.support.servers import HealthServer

SECRET = "S3CRET-9f1c"
HEADERS = {
    "Authorization": f"Bearer {SECRET}",
    "Cookie": f"session={SECRET}",
    "X-Api-Key": SECRET,
    "X-Probe": "crackseg",
}


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


@pytest.fixture()
def follower() -> Iterator[DefaultHealthChecker]:
    c = DefaultHealthChecker(follow_redirects=True, headers=HEADERS)
    yield c
    c.close()


def _redirect(srv: HostileServer, to: str) -> str:
    return srv.url("/redirect?to=" + quote(to, safe=":/"))


def test_cross_origin_redirect_drops_credentials(
    hostile: HostileServer, follower: DefaultHealthChecker
) -> None:
    with HealthServer() as other:  # another port: another origin
        r = follower.check_health(_redirect(hostile, other.url("/echo-headers")), timeout=5)
        assert r.success and r.details["redirects"] == 1, r
        got = {k.lower(): v for k, v in other.last_headers.items()}
    assert got["x-probe"] == "crackseg"
    for name in ("authorization", "cookie", "x-api-key"):
        assert name not in got, name
    assert SECRET not in repr(got)
    # and the first hop did carry them: the origin the user configured gets its headers
    assert f"Bearer {SECRET}".encode() in hostile.last_request


def test_url_credentials_stay_on_their_origin(hostile: HostileServer) -> None:
    c = DefaultHealthChecker(follow_redirects=True)
    try:
        with HealthServer() as other:
            first = hostile.url("/redirect?to=" + quote(other.url("/echo-headers"), safe=":/"))
            url = first.replace("http://", "http://user:pw@", 1)
            assert c.check_health(url, timeout=5).success
            assert "Authorization" not in other.last_headers
    finally:
        c.close()


def test_same_origin_redirect_keeps_credentials(
    hostile: HostileServer, follower: DefaultHealthChecker
) -> None:
    r = follower.check_health(_redirect(hostile, "/health"), timeout=5)
    assert r.success and r.details["redirects"] == 1
    assert b"/health " in hostile.last_request
    assert f"Bearer {SECRET}".encode() in hostile.last_request
    assert SECRET.encode() in hostile.last_request.split(b"X-Api-Key:")[1][:40]


def test_secret_in_a_location_is_masked_everywhere_in_the_result(
    hostile: HostileServer,
) -> None:
    c = DefaultHealthChecker()
    try:
        target = f"http://127.0.0.1:9/login?token={SECRET}&next=/"
        r = c.check_health(_redirect(hostile, target), timeout=5)
        assert r.details["error_type"] == "redirect"
        assert SECRET not in repr(r) and "token=***" in (r.error_message or "")
        assert SECRET not in r.details["location"]
    finally:
        c.close()
    c = DefaultHealthChecker(follow_redirects=True, max_redirects=0)
    try:
        r = c.check_health(_redirect(hostile, f"/x?access_token={SECRET}"), timeout=5)
        assert r.details["error_type"] == "too_many_redirects" and SECRET not in repr(r)
    finally:
        c.close()


def test_an_origin_is_scheme_host_and_port() -> None:
    """A downgrade or upgrade of scheme on the same host:port is another origin too."""
    from crackseg.utils.deployment.monitoring.checks._fastclient import Target, parse_target

    a, b, c = (parse_target(u, {}) for u in ("http://h:8/x", "https://h:8/y", "http://h:8/z"))
    assert isinstance(a, Target) and isinstance(b, Target) and isinstance(c, Target)
    assert a.origin != b.origin and a.origin == c.origin


def test_location_secret_never_leaves_the_monitor(
    hostile: HostileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Status, log, SQLite rows, export and alert messages: the token stays masked."""
    from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
    from crackseg.utils.deployment.history.sqlite.store import SQLiteStore

    caplog.set_level(logging.DEBUG)
    store = SQLiteStore(tmp_path / "history.db", flush_interval=0.05)
    monitor = DeploymentHealthMonitor(store=store, failure_threshold=1)
    url = _redirect(hostile, f"http://127.0.0.1:9/login?token={SECRET}")
    try:
        monitor.add_deployment_monitoring("svc", url, process_name=None, check_interval=0.1)
        monitor.start_monitoring()
        assert monitor.wait_for_checks("svc", 3)
        status = monitor.get_deployment_status("svc")
        out = monitor.export_monitoring_data(tmp_path / "export.json")
    finally:
        monitor.stop_monitoring()
        store.close()
    assert "token=***" in str(status["last_error"])
    texts = {
        "status": repr(status),
        "export": out.read_text(),
        "log": caplog.text,
        "sqlite": (tmp_path / "history.db").read_bytes().decode("latin-1"),
    }
    for where, text in texts.items():
        assert SECRET not in text, where


def test_a_configured_host_header_is_sent_once_and_not_across_origins(
    hostile: HostileServer,
) -> None:
    c = DefaultHealthChecker(follow_redirects=True, headers={"Host": "svc.internal"})
    try:
        assert c.check_health(hostile.url("/health"), timeout=5).success
        assert hostile.last_request.lower().count(b"host:") == 1
        assert b"Host: svc.internal" in hostile.last_request
        with HealthServer() as other:
            assert c.check_health(_redirect(hostile, other.url("/echo-headers")), 5).success
            assert other.last_headers["Host"] == f"127.0.0.1:{other.port}"
    finally:
        c.close()
