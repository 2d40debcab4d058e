"""The JSON API, /metrics and /healthz of the web face, over a real monitor checking real
HTTP servers on 127.0.0.1 (all on the test's event loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from crackseg.utils.deployment.delivery.channels.log import LoggingAlertHandler
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.models import DeploymentMetadata, HealthCheckResult
from crackseg.utils.deployment.monitoring.suppression import SilenceRegistry
from crackseg.utils.deployment.service.metrics import UptimeTracker, package_version
from crackseg.utils.deployment.service.web.app import (
    CTX,
    MAX_BODY_BYTES,
    WebServer,
    create_app,
    start_web,
)
from tests.support.procs import named_process
from tests.support.wait import poll

TOKEN = "s3cret-token-value"
SECRET = "hunter2pass"


@dataclass
class Target:
    """A live HTTP server whose per-path answers (status, JSON status) the test can change."""

    port: int = 0
    answers: dict[str, tuple[int, str]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@dataclass
class Stack:
    target: Target
    monitor: DeploymentHealthMonitor
    base: str
    http: aiohttp.ClientSession
    silences: SilenceRegistry

    async def add(self, dep_id: str, path: str, checks: int = 1, **kw: Any) -> None:
        kw.setdefault("check_interval", 0.2)
        self.monitor.add_deployment_monitoring(dep_id, self.target.url(path), **kw)
        assert await asyncio.to_thread(self.monitor.wait_for_checks, dep_id, checks, 10.0)

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.get(self.base + path, **kw) as r:
            return r.status, await r.json()

    async def send(self, method: str, path: str, token: str | None = TOKEN, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.read()
            return r.status, (await r.json() if body else None), r.headers


async def _serve_target(target: Target) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        status, health = target.answers.get(request.path, (404, "unknown"))
        return web.json_response({"status": health}, status=status)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    target.port = int(runner.addresses[0][1])
    return runner


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    target = Target(answers={"/ok": (200, "healthy"), "/bad": (500, "unhealthy")})
    target_runner = await _serve_target(target)
    target.answers["/deg"] = (503, "degraded")
    monitor = DeploymentHealthMonitor(failure_threshold=1, success_threshold=1)
    monitor.add_alert_handler(LoggingAlertHandler())
    await monitor.start_monitoring_async()
    silences = SilenceRegistry()
    runner, port = await start_web(monitor, token=TOKEN, silences=silences)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        yield Stack(target, monitor, f"http://127.0.0.1:{port}", http, silences)
    finally:
        await http.close()
        await runner.cleanup()
        await monitor.stop_monitoring_async()
        monitor.close()
        await target_runner.cleanup()


async def test_list_and_get_report_real_checks_with_uptime(stack: Stack) -> None:
    await stack.add("good", "/ok", checks=2)
    await stack.add("broken", "/bad", checks=2)
    await stack.add("limping", "/deg")
    status, body = await stack.get("/api/v1/deployments")
    assert status == 200 and body["count"] == 3 and body["monitoring_active"] is True
    rows = {d["deployment_id"]: d for d in body["deployments"]}
    assert [d["deployment_id"] for d in body["deployments"]] == ["broken", "good", "limping"]
    assert rows["good"]["health_status"] == "healthy"
    assert rows["broken"]["health_status"] == "unhealthy"
    assert rows["limping"]["health_status"] == "degraded"
    assert (
        rows["good"]["uptime_24h_percent"] == 100.0 and rows["good"]["uptime_7d_percent"] == 100.0
    )
    assert rows["broken"]["uptime_24h_percent"] == 0.0
    assert rows["limping"]["uptime_24h_percent"] == 100.0  # degraded answers count as up
    assert rows["good"]["response_time_ms"] > 0

    status, only = await stack.get("/api/v1/deployments?status=unhealthy")
    assert [d["deployment_id"] for d in only["deployments"]] == ["broken"]
    status, one = await stack.get("/api/v1/deployments/broken")
    assert (
        status == 200 and one["health_status"] == "unhealthy" and one["consecutive_failures"] >= 2
    )
    assert one["last_error"] and "500" in one["last_error"]
    status, err = await stack.get("/api/v1/deployments/nope")
    assert status == 404 and err["field"] == "deployment_id" and "nope" in err["detail"]
    status, err = await stack.get("/api/v1/no-such-route")
    assert status == 404 and err["status"] == 404 and err["detail"]


async def test_history_honours_time_range_and_limit(stack: Stack) -> None:
    with named_process() as proc:
        await stack.add("good", "/ok", checks=4, process_name=proc)
        status, body = await stack.get("/api/v1/deployments/good/history")
        assert status == 200 and len(body["health"]) >= 4 and len(body["resources"]) >= 4
        stamps = [r["timestamp"] for r in body["health"]]
        assert stamps == sorted(stamps)
        assert all(r["status"] == "healthy" for r in body["health"])
        assert body["resources"][0]["process_name"] == proc

        _, last2 = await stack.get("/api/v1/deployments/good/history?limit=2")
        assert [r["timestamp"] for r in last2["health"]] == stamps[-2:]
        _, window = await stack.get(
            f"/api/v1/deployments/good/history?since={stamps[1]}&until={stamps[2]}"
        )
        assert [r["timestamp"] for r in window["health"]] == stamps[1:3]

        for query, fld in (("limit=abc", "limit"), ("limit=0", "limit"), ("since=x", "since")):
            status, err = await stack.get(f"/api/v1/deployments/good/history?{query}")
            assert (status, err["field"]) == (400, fld), query
        status, err = await stack.get("/api/v1/deployments/good/history?since=10&until=5")
        assert (status, err["field"]) == (400, "until")
        status, err = await stack.get("/api/v1/deployments/ghost/history")
        assert status == 404


async def test_writes_need_the_bearer_token(stack: Stack) -> None:
    new = {"deployment_id": "added", "health_check_url": stack.target.url("/ok")}
    for token in (None, "wrong-token", ""):
        status, err, headers = await stack.send("POST", "/api/v1/deployments", token, json=new)
        assert status == 401 and err["field"] == "Authorization"
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "added" not in stack.monitor.monitored_deployments
    status, _, _ = await stack.send("DELETE", "/api/v1/deployments/added", None)
    assert status == 401

    status, body, headers = await stack.send(
        "POST", "/api/v1/deployments", json={**new, "check_interval": 0.2}
    )
    assert status == 201 and body["deployment_id"] == "added"
    assert headers["Location"] == "/api/v1/deployments/added"
    assert await asyncio.to_thread(stack.monitor.wait_for_checks, "added", 1, 10.0)
    status, got = await stack.get("/api/v1/deployments/added")  # reads stay open
    assert status == 200 and got["health_status"] == "healthy"

    status, err, _ = await stack.send("POST", "/api/v1/deployments", json=new)
    assert status == 409 and err["field"] == "deployment_id"
    status, body, _ = await stack.send("DELETE", "/api/v1/deployments/added")
    assert status == 204 and body is None
    assert "added" not in stack.monitor.monitored_deployments
    status, err, _ = await stack.send("DELETE", "/api/v1/deployments/added")
    assert status == 404


@pytest.mark.parametrize(
    ("change", "fld"),
    [
        ({"check_interval": -1}, "check_interval"),
        ({"check_interval": "often"}, "check_interval"),
        ({"health_check_url": "ftp://example.org/health"}, "health_check_url"),
        ({"deployment_id": ""}, "deployment_id"),
        ({"deployment_id": "bad id with spaces"}, "deployment_id"),
        ({"thresholds": {"bogus": 1}}, "thresholds.bogus"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_invalid_deployments_are_refused_naming_the_field(
    stack: Stack, change: dict[str, Any], fld: str
) -> None:
    body = {"deployment_id": "x", "health_check_url": stack.target.url("/ok"), **change}
    status, err, _ = await stack.send("POST", "/api/v1/deployments", json=body)
    assert status == 400 and err["field"] == fld and err["detail"]
    assert stack.monitor.monitored_deployments == {}


async def test_malformed_and_oversized_bodies(stack: Stack) -> None:
    path = "/api/v1/deployments"
    status, err, _ = await stack.send(
        "POST", path, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (status, err["field"]) == (400, "body")
    status, err, _ = await stack.send("POST", path, json=[1, 2])
    assert (status, err["field"]) == (400, "body")
    status, err, _ = await stack.send("POST", path, data=b"id=x")
    assert status == 415
    huge = {"deployment_id": "x", "health_check_url": "http://h/" + "a" * MAX_BODY_BYTES}
    status, err, _ = await stack.send("POST", path, json=huge)
    assert status == 413 and err["field"] == "body"


async def test_alerts_fire_and_resolve_through_the_api(stack: Stack) -> None:
    stack.target.answers["/flip"] = (500, "unhealthy")
    await stack.add("flippy", "/flip", checks=1)
    _, body = await stack.get("/api/v1/alerts")
    firing = [a for a in body["alerts"] if a["alert_type"] == "health_check_failed"]
    assert firing and firing[0]["deployment_id"] == "flippy"
    assert firing[0]["severity"] == "critical"

    stack.target.answers["/flip"] = (200, "healthy")
    assert await asyncio.to_thread(stack.monitor.wait_for_checks, "flippy", 2, 10.0)
    _, body = await stack.get("/api/v1/alerts?deployment_id=flippy")
    assert all(a["alert_type"] != "health_check_failed" for a in body["alerts"])
    _, hist = await stack.get("/api/v1/alerts/history?deployment_id=flippy")
    states = [(e["alert_type"], e["state"]) for e in hist["events"]]
    assert ("health_check_failed", "firing") in states
    assert ("health_check_failed", "resolved") in states
    status, err = await stack.get("/api/v1/alerts/history?limit=-3")
    assert (status, err["field"]) == (400, "limit")


async def test_deploy_records_newest_first_and_redacted(stack: Stack) -> None:
    old = DeploymentMetadata("dep-1", "model:v1", "canary", start_time=time.time() - 100)
    old.set_state("success")
    new = DeploymentMetadata(
        "dep-2",
        "model:v2",
        "blue_green",
        deployment_url=f"http://admin:{SECRET}@10.0.0.5:8080/?token={SECRET}",
        extra={"api_key": SECRET},
    )
    new.set_state("failed", "gate failed")
    stack.monitor.store.save_deployment(old)
    stack.monitor.store.save_deployment(new)
    async with stack.http.get(stack.base + "/api/v1/rollouts") as r:
        text = await r.text()
    assert SECRET not in text
    _, body = await stack.get("/api/v1/rollouts")
    assert [d["deployment_id"] for d in body["rollouts"]] == ["dep-2", "dep-1"]
    assert body["rollouts"][0]["state_history"][-1]["reason"] == "gate failed"
    _, body = await stack.get("/api/v1/rollouts?artifact_id=model:v1&limit=5")
    assert [d["deployment_id"] for d in body["rollouts"]] == ["dep-1"]


async def test_secrets_in_urls_never_reach_a_response(stack: Stack) -> None:
    url = f"http://user:{SECRET}@127.0.0.1:{stack.target.port}/bad?api_token={SECRET}"
    stack.monitor.add_deployment_monitoring("leaky", url, check_interval=0.2)
    assert await asyncio.to_thread(stack.monitor.wait_for_checks, "leaky", 1, 10.0)
    for path in (
        "/api/v1/deployments",
        "/api/v1/deployments/leaky",
        "/api/v1/deployments/leaky/history",
        "/api/v1/alerts",
        "/api/v1/alerts/history",
        "/metrics",
    ):
        async with stack.http.get(stack.base + path) as r:
            assert r.status == 200
            assert SECRET not in await r.text(), path
    status, body, _ = await stack.send(
        "POST",
        "/api/v1/deployments",
        json={"deployment_id": "leaky2", "health_check_url": url.replace("/bad", "/ok")},
    )
    assert status == 201 and SECRET not in str(body)
    assert "user:***@" in body["health_check_url"]


async def test_silences_round_trip(stack: Stack) -> None:
    status, body, headers = await stack.send(
        "POST",
        "/api/v1/silences",
        json={"deployment_id": "db-*", "duration_seconds": 600, "comment": "upgrade"},
    )
    assert status == 201 and body["deployment_id"] == "db-*" and body["comment"] == "upgrade"
    sid = body["id"]
    assert headers["Location"] == f"/api/v1/silences/{sid}"
    assert stack.silences("db-main", "high_cpu_usage", time.time()) is not None
    _, listed = await stack.get("/api/v1/silences")
    assert [s["id"] for s in listed["silences"]] == [sid]
    status, err, _ = await stack.send("POST", "/api/v1/silences", json={"duration_seconds": 5})
    assert (status, err["field"]) == (400, "deployment_id")
    status, err, _ = await stack.send(
        "POST", "/api/v1/silences", json={"alert_type": "x", "duration_seconds": 0}
    )
    assert (status, err["field"]) == (400, "duration_seconds")
    status, _, _ = await stack.send("DELETE", f"/api/v1/silences/{sid}", None)
    assert status == 401
    status, _, _ = await stack.send("DELETE", f"/api/v1/silences/{sid}")
    assert status == 204 and stack.silences.list() == []
    status, _, _ = await stack.send("DELETE", f"/api/v1/silences/{sid}")
    assert status == 404


async def test_openapi_describes_every_route(stack: Stack) -> None:
    status, doc = await stack.get("/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    app = create_app(stack.monitor)
    routes: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if route.method == "HEAD" or path is None:
            continue  # HEAD twins of GET routes; the static directory
        routes.add((path, route.method.lower()))
    assert len(routes) >= 14
    for path, method in routes:
        assert method in doc["paths"].get(path, {}), f"{method.upper()} {path} undocumented"
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert documented == routes  # and nothing documented that does not exist


async def test_read_protection_keeps_healthz_page_and_metrics_open(stack: Stack) -> None:
    runner, port = await start_web(stack.monitor, token=TOKEN, protect_reads=True)
    base = f"http://127.0.0.1:{port}"
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/api/v1/deployments", "/api/v1/alerts", "/api/v1/openapi.json"):
            async with stack.http.get(base + path) as r:
                assert r.status == 401, path
            async with stack.http.get(base + path, headers=auth) as r:
                assert r.status == 200, path
        for path in ("/healthz", "/metrics", "/", "/static/app.js"):
            async with stack.http.get(base + path) as r:
                assert r.status == 200, path
    finally:
        await runner.cleanup()
    runner, port = await start_web(stack.monitor, token=TOKEN, protect_metrics=True)
    try:
        async with stack.http.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 401
    finally:
        await runner.cleanup()


async def test_page_is_served_with_strict_headers(stack: Stack) -> None:
    async with stack.http.get(stack.base + "/") as r:
        assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert 'src="/static/app.js"' in await r.text()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    instances = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = dict(s.labels)
            instances.add(labels.pop("monitor_instance", None))
            out[(s.name, frozenset(labels.items()))] = s.value
    assert len(instances) == 1 and None not in instances, "one monitor_instance on every series"
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_metrics_expose_probe_histogram_alerts_and_engine(stack: Stack) -> None:
    with named_process() as proc:
        await stack.add("good", "/ok", checks=3, process_name=proc)
        await stack.add("broken", "/bad", checks=2)
        assert await asyncio.to_thread(stack.monitor.dispatcher.wait_idle, 5.0)
        async with stack.http.get(stack.base + "/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            s = _samples(await r.text())
        assert (
            _value(s, "probe_success", deployment_id="good", instance=stack.target.url("/ok"))
            == 1.0
        )
        assert (
            _value(s, "crackseg_deployment_status", deployment_id="broken", status="unhealthy") == 1
        )
        assert _value(s, "crackseg_consecutive_failures", deployment_id="broken") >= 2
        checks = _value(s, "crackseg_deployment_checks_total", deployment_id="good")
        count = _value(s, "crackseg_probe_response_time_seconds_count", deployment_id="good")
        assert count >= 3 and abs(count - checks) <= 1  # scraped between two updates at most
        assert (
            _value(
                s, "crackseg_probe_response_time_seconds_bucket", deployment_id="good", le="+Inf"
            )
            == count
        )
        last_check = _value(s, "crackseg_probe_last_check_timestamp_seconds", deployment_id="good")
        assert 0 < time.time() - last_check < 60
        assert _value(s, "crackseg_uptime_ratio", deployment_id="broken", window="24h") == 0.0
        assert _value(s, "crackseg_uptime_ratio", deployment_id="good", window="7d") == 1.0
        assert _value(s, "crackseg_process_cpu_seconds_total", deployment_id="good") >= 0
        assert _value(s, "crackseg_process_resident_memory_bytes", deployment_id="good") > 1e6
        # The machine is not a deployment: its use appears once, not in "broken"'s columns.
        assert (
            "crackseg_process_cpu_seconds_total", frozenset({("deployment_id", "broken")})
        ) not in s  # fmt: skip
        assert 0 <= _value(s, "crackseg_host_cpu_usage_ratio") <= 1
        assert 0 < _value(s, "crackseg_host_memory_usage_ratio") < 1
        assert _value(s, "crackseg_host_memory_used_bytes") > 1e6
        assert _value(s, "crackseg_host_network_receive_bytes_total") > 0
        assert _value(s, "crackseg_host_network_transmit_bytes_total") > 0
        assert 0 < _value(s, "crackseg_host_disk_usage_ratio") < 1
        assert _value(s, "crackseg_build_info", version=package_version()) == 1
        assert _value(s, "crackseg_alert_active", deployment_id="broken",
                      alert_type="health_check_failed", severity="critical") == 1  # fmt: skip
        assert _value(s, "crackseg_active_alerts") >= 1
        sent = _value(
            s, "crackseg_alert_notifications_total", handler="LoggingAlertHandler", result="sent"
        )
        assert sent >= 1
        assert _value(s, "crackseg_monitor_up") == 1
        assert _value(s, "crackseg_monitored_deployments") == 2
        assert _value(s, "crackseg_engine_checks_total") >= 5
        assert ("crackseg_engine_lateness_seconds", frozenset({("quantile", "0.99")})) in s

        # A removed deployment's series go away with it.
        stack.monitor.remove_deployment_monitoring("broken")
        async with stack.http.get(stack.base + "/metrics") as r:
            text = await r.text()
        assert 'deployment_id="broken"' not in text


async def test_healthz_follows_the_engine(stack: Stack) -> None:
    status, body = await stack.get("/healthz")
    assert status == 200 and body["status"] == "ok"
    await stack.monitor.stop_monitoring_async()
    status, body = await stack.get("/healthz")
    assert status == 503 and body["monitoring_active"] is False
    async with stack.http.get(stack.base + "/metrics") as r:
        assert _value(_samples(await r.text()), "crackseg_monitor_up") == 0.0


def test_web_server_serves_from_its_own_thread() -> None:
    monitor = DeploymentHealthMonitor()
    try:
        monitor.start_monitoring()
        with WebServer(monitor) as server:
            assert server.port and server.url == f"http://127.0.0.1:{server.port}"
            r = requests.get(server.url + "/healthz", timeout=5)
            assert r.status_code == 200 and r.json()["status"] == "ok"
            r = requests.post(
                server.url + "/api/v1/deployments",
                json={"deployment_id": "a", "health_check_url": "http://127.0.0.1:9/h"},
                timeout=5,
            )
            assert r.status_code == 201  # no token configured: writes are open
            thread = server._thread
        assert thread is not None and poll(lambda: not thread.is_alive())
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=2)
        server.stop()  # twice is harmless
    finally:
        monitor.close()


def test_web_server_reports_a_port_in_use() -> None:
    monitor = DeploymentHealthMonitor()
    try:
        with WebServer(monitor) as first:
            second = WebServer(monitor, port=first.port or 0)
            with pytest.raises(OSError):
                second.start()
            assert second._thread is None
    finally:
        monitor.close()


def test_empty_token_is_refused() -> None:
    monitor = DeploymentHealthMonitor()
    try:
        with pytest.raises(ValueError, match="token"):
            create_app(monitor, token="  ")
    finally:
        monitor.close()


async def test_uptime_windows_include_history_stored_before_start() -> None:
    """24 h / 7 d uptime counts results already in the store when the web app starts."""
    monitor = DeploymentHealthMonitor()  # not started: only stored history counts
    try:
        monitor.add_deployment_monitoring("old", "http://127.0.0.1:9/health")
        now = time.time()
        for i, up in enumerate([True, False, False, False, True, True]):  # two days ago
            monitor.store.add_health(
                "old",
                HealthCheckResult(up, "healthy" if up else "unhealthy", 1.0, now - 2 * 86400 + i),
            )
        monitor.store.add_health("old", HealthCheckResult(True, "degraded", 1.0, now - 8 * 86400))
        for i in range(4):  # within the last day (degraded counts as up)
            monitor.store.add_health(
                "old", HealthCheckResult(False, "degraded", 1.0, now - 600 + i)
            )
        runner, port = await start_web(monitor)
        try:
            url = f"http://127.0.0.1:{port}/api/v1/deployments/old"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.get(url) as r:
                    assert r.status == 200
                tracker = runner.app[CTX].uptime
                assert await asyncio.to_thread(tracker.wait_seeded, 10.0)
                async with http.get(url) as r:
                    body = await r.json()
            assert body["uptime_24h_percent"] == 100.0
            assert body["uptime_7d_percent"] == 70.0  # 7 of 10; the 8-day-old row is out
        finally:
            await runner.cleanup()
    finally:
        monitor.close()


def test_uptime_tracker_windows_slide_by_the_hour() -> None:
    tracker = UptimeTracker(MemoryStore(), start=0.0)
    now = 1_000 * 3600.0
    tracker.observe("a", HealthCheckResult(False, "unhealthy", 1.0, now - 30 * 3600))
    tracker.observe("a", HealthCheckResult(True, "healthy", 1.0, now - 60))
    assert tracker.uptime("a", now=now) == {"24h": 100.0, "7d": 50.0}
    assert tracker.uptime("a", now=now + 7 * 86400) == {"24h": None, "7d": None}
    tracker.forget("a")
    assert tracker.uptime("a", now=now) == {"24h": None, "7d": None}
    assert tracker.wait_seeded(5.0)
    tracker.close()


async def test_deploys_come_from_the_orchestrator_when_given(stack: Stack) -> None:
    from crackseg.utils.deployment.orchestration import DeploymentOrchestrator

    stack.monitor.store.save_deployment(DeploymentMetadata("monitor-only", "m:v0"))
    orchestrator = DeploymentOrchestrator(stack.monitor, store=MemoryStore())
    try:
        record = DeploymentMetadata("orch-1", "m:v1", "rolling", version="v1")
        record.set_state("success")
        orchestrator.store.save_deployment(record)
        runner, port = await start_web(stack.monitor, orchestrator=orchestrator)
        try:
            url = f"http://127.0.0.1:{port}/api/v1/rollouts"
            async with stack.http.get(url) as r:
                body = await r.json()
        finally:
            await runner.cleanup()
    finally:
        orchestrator.close()
    assert [d["deployment_id"] for d in body["rollouts"]] == ["orch-1"]
    assert body["rollouts"][0]["state"] == "success"


class _BrokenHistory:
    def get_deployment_history(self) -> list[DeploymentMetadata]:
        raise RuntimeError(f"cannot reach http://admin:{SECRET}@db.internal/records")


async def test_handler_failure_answers_500_without_leaking(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    runner, port = await start_web(stack.monitor, orchestrator=_BrokenHistory())
    try:
        async with stack.http.get(f"http://127.0.0.1:{port}/api/v1/rollouts") as r:
            status, text = r.status, await r.text()
    finally:
        await runner.cleanup()
    assert status == 500 and '"internal error"' in text and SECRET not in text
    assert "RuntimeError" in caplog.text and SECRET not in caplog.text
