"""The sample service: routes, fault knobs, metrics, admin toggles, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from crackseg.utils.deployment.processes import free_port
from crackseg.utils.deployment.service.sample_service import (
    RunningSampleService,
    start_sample_service,
)
from tests.support.runtime import http_get, wait_healthy

TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


async def _service(**knobs: Any) -> RunningSampleService:
    return await start_sample_service(knobs.pop("version", "v7"), **knobs)


async def _get(
    client: aiohttp.ClientSession, url: str, method: str = "GET"
) -> tuple[int, str, Any]:
    async with client.request(method, url) as resp:
        if resp.content_type == "application/json":
            body: Any = await resp.json()
        else:
            body = await resp.text()
        return resp.status, resp.headers.get("X-Version", ""), body


async def test_healthy_service_answers_every_route_with_its_version(
    client: aiohttp.ClientSession,
) -> None:
    svc = await _service()
    try:
        status, version, body = await _get(client, svc.url + "/health")
        assert (status, version, body["status"], body["version"]) == (200, "v7", "healthy", "v7")
        assert body["uptime_seconds"] >= 0
        for method in ("GET", "POST"):
            status, version, body = await _get(client, svc.url + "/predict", method)
            assert (status, version, body["version"]) == (200, "v7", "v7")
            assert len(body["mask"]) == 4 and set(body["mask"][0]) == {0, 1}
        assert (await _get(client, svc.url + "/version"))[2] == {"version": "v7"}
        status, version, _ = await _get(client, svc.url + "/no-such-route")
        assert (status, version) == (404, "v7")  # errors carry the version too
    finally:
        await svc.aclose()


async def test_metrics_count_requests_errors_and_latency(client: aiohttp.ClientSession) -> None:
    svc = await _service(error_rate=0.5)
    try:
        for _ in range(4):
            await _get(client, svc.url + "/predict")
        await _get(client, svc.url + "/nope")
        status, _, text = await _get(client, svc.url + "/metrics")
        assert status == 200
        lines = set(text.splitlines())
        assert 'http_requests_total{code="200",method="GET",route="/predict"} 2.0' in lines
        assert 'http_requests_total{code="500",method="GET",route="/predict"} 2.0' in lines
        assert 'http_requests_total{code="404",method="GET",route="other"} 1.0' in lines
        assert 'http_request_errors_total{route="/predict"} 2.0' in lines
        assert 'http_request_duration_seconds_count{route="/predict"} 4.0' in lines
        assert 'sample_service_info{version="v7"} 1.0' in lines
    finally:
        await svc.aclose()


async def test_error_rate_fails_exactly_that_share(client: aiohttp.ClientSession) -> None:
    svc = await _service(error_rate=0.3)
    try:
        statuses = [(await _get(client, svc.url + "/predict"))[0] for _ in range(100)]
        assert statuses.count(500) == 30 and statuses.count(200) == 70
        assert (await _get(client, svc.url + "/health"))[0] == 200  # health stays fine
    finally:
        await svc.aclose()


@pytest.mark.parametrize(
    ("knobs", "code", "state"),
    [({"degraded": True}, 503, "degraded"), ({"fail_health": True}, 500, "unhealthy")],
)
async def test_sick_health_reports_issues(
    client: aiohttp.ClientSession, knobs: dict[str, Any], code: int, state: str
) -> None:
    svc = await _service(**knobs)
    try:
        status, version, body = await _get(client, svc.url + "/health")
        assert (status, version, body["status"]) == (code, "v7", state)
        assert body["issues"] and all(isinstance(i, str) for i in body["issues"])
    finally:
        await svc.aclose()


async def test_startup_delay_answers_starting_then_healthy(client: aiohttp.ClientSession) -> None:
    svc = await _service(startup_delay=0.6)
    try:
        status, _, body = await _get(client, svc.url + "/health")
        assert (status, body["status"]) == (503, "starting")
        assert (await _get(client, svc.url + "/predict"))[0] == 503
        deadline = time.monotonic() + 10
        while (await _get(client, svc.url + "/health"))[0] != 200:
            assert time.monotonic() < deadline, "never became healthy"
            await asyncio.sleep(0.05)
        assert time.monotonic() - svc.state.started_at >= 0.6
    finally:
        await svc.aclose()


async def test_latency_knob_delays_predict(client: aiohttp.ClientSession) -> None:
    svc = await _service(latency_ms=150)
    try:
        start = time.monotonic()
        assert (await _get(client, svc.url + "/predict"))[0] == 200
        assert time.monotonic() - start >= 0.15
    finally:
        await svc.aclose()


async def test_admin_routes_make_a_live_instance_sick_and_well(
    client: aiohttp.ClientSession,
) -> None:
    svc = await _service()
    try:
        assert (await _get(client, svc.url + "/admin/fail", "POST"))[0] == 200
        assert (await _get(client, svc.url + "/health"))[0] == 500
        await _get(client, svc.url + "/admin/fail?mode=degraded", "POST")
        await _get(client, svc.url + "/admin/fail?mode=errors&error_rate=1", "POST")
        assert (await _get(client, svc.url + "/predict"))[0] == 500
        status, _, body = await _get(client, svc.url + "/admin/fail?mode=bogus", "POST")
        assert status == 400 and "mode" in body["error"]
        status, _, body = await _get(client, svc.url + "/admin/recover", "POST")
        assert body == {
            "version": "v7",
            "fail_health": False,
            "degraded": False,
            "error_rate": 0.0,
            "latency_ms": 0.0,
        }
        assert (await _get(client, svc.url + "/health"))[0] == 200
        assert (await _get(client, svc.url + "/predict"))[0] == 200
    finally:
        await svc.aclose()


def test_cli_rejects_bad_error_rate() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "crackseg.utils.deployment.service.sample_service", "--port", "1",
         "--error-rate", "1.5"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and b"--error-rate" in out.stderr


def test_sigterm_finishes_in_flight_requests_then_exits_zero(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "svc.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crackseg.utils.deployment.service.sample_service",
             "--port", str(port), "--version", "v2", "--latency-ms", "800"],
            stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health")
        result: list[object] = []

        def slow_request() -> None:
            try:
                result.append(http_get(f"http://127.0.0.1:{port}/predict", timeout=10)[:2])
            except OSError as exc:
                result.append(exc)

        worker = threading.Thread(target=slow_request)
        worker.start()
        # The request is in flight once its connection is established on the service's side.
        deadline = time.monotonic() + 10
        while not any(
            c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
            for c in psutil.Process(proc.pid).net_connections()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        worker.join(timeout=15)
        assert proc.wait(timeout=15) == 0
        assert len(result) == 1 and not isinstance(result[0], Exception), result
        status, headers = result[0]  # type: ignore[misc]
        assert status == 200 and headers["X-Version"] == "v2"
        assert "stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
