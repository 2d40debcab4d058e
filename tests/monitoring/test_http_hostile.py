"""Hostile endpoints: bounded heads, decoded bodies, one behaviour on http and https.

Every case of :data:`CASES` runs against the plain and the TLS path of the same hostile
server (tests/support/hostile.py) and must give the same status and the same message.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import psutil
import pytest

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests.support.hostile import HostileServer
from tests.support.hostile_cases import (
    CASES,
    COUNT,
    DIFF_TIMEOUT,
    LINE,
    TIMEOUT,
    servers,
    shape,
    tls_context,
)

__all__ = ["servers", "tls_context"]  # the shared fixtures this module uses


@pytest.fixture()
def checker() -> Iterator[DefaultHealthChecker]:
    c = DefaultHealthChecker(verify_tls=False)
    yield c
    c.close()


@pytest.mark.parametrize("path", list(CASES))
def test_same_answer_on_http_and_https(
    path: str, servers: dict[str, HostileServer], checker: DefaultHealthChecker
) -> None:
    status, message, truncated = CASES[path]
    results = {}
    for scheme, srv in servers.items():
        started = time.monotonic()
        results[scheme] = r = checker.check_health(srv.url(path), timeout=DIFF_TIMEOUT)
        assert time.monotonic() - started < DIFF_TIMEOUT + 1.0, (scheme, path)
        assert r.status == status, (scheme, r)
        if message is None:
            assert r.error_message is None, (scheme, r)
        else:
            assert r.error_message is not None and r.error_message.startswith(message), (scheme, r)
        assert r.details.get("body_truncated", False) is truncated
        assert "S3CRET" not in repr(r)
    assert shape(results["http"]) == shape(results["https"])


async def test_hundred_endless_heads_bounded_in_time_memory_and_loop_lag(
    servers: dict[str, HostileServer],
) -> None:
    """100 endpoints that never end their headers at once: each fails fast, memory stays
    flat and a healthy deployment checked meanwhile keeps its pace."""
    plain = servers["http"]
    c = DefaultHealthChecker()
    proc = psutil.Process()
    try:
        paths = ["/endless-headers", "/endless-line", "/endless-status", "/huge-line"]
        warm = [c.check_health_async(plain.url(p), TIMEOUT) for p in paths * 5]
        await asyncio.gather(*warm)
        rss_before = proc.memory_info().rss
        peak = rss_before
        healthy: list[HealthCheckResult] = []
        lateness: list[float] = []
        stop = asyncio.Event()

        async def healthy_deployment() -> None:
            # Checked every 50 ms on the same loop: its checks must stay on time.
            while not stop.is_set():
                due = time.monotonic() + 0.05
                healthy.append(await c.check_health_async(plain.url("/health"), TIMEOUT))
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                lateness.append(time.monotonic() - due)

        async def sample_rss() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, proc.memory_info().rss)
                await asyncio.sleep(0.01)

        bg = [asyncio.create_task(healthy_deployment()), asyncio.create_task(sample_rss())]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        hostile = [paths[i % len(paths)] for i in range(100)]
        results = await asyncio.gather(
            *(c.check_health_async(plain.url(p), TIMEOUT) for p in hostile)
        )
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*bg)
        assert all(r.status == "unhealthy" for r in results)
        assert {r.error_message for r in results} <= {LINE, COUNT}
        assert elapsed < TIMEOUT, elapsed  # refused on the bound, not at the timeout
        growth_mb = (peak - rss_before) / 2**20
        assert growth_mb < 20, f"RSS grew {growth_mb:.1f} MB"
        assert healthy and all(r.success for r in healthy)
        assert max(lateness) < 0.5, max(lateness)  # generous: the machine is shared
    finally:
        await c.aclose()


def test_gzip_bomb_is_decoded_only_up_to_the_body_bound(
    servers: dict[str, HostileServer],
) -> None:
    c = DefaultHealthChecker(max_body_bytes=1024)
    try:
        proc = psutil.Process()
        before = proc.memory_info().rss
        r = c.check_health(servers["http"].url("/gzip-bomb"), timeout=TIMEOUT)
        assert r.success and r.details["body_truncated"] is True
        assert (proc.memory_info().rss - before) / 2**20 < 20  # 50 MB inflated would show
    finally:
        c.close()


def test_hostile_deployments_do_not_move_the_others_schedule(
    servers: dict[str, HostileServer],
) -> None:
    """5 hostile endpoints among 30 healthy ones on one monitor: every healthy deployment
    keeps its 0.2 s pace and stays healthy."""
    from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor

    plain = servers["http"]
    monitor = DeploymentHealthMonitor(default_timeout=TIMEOUT)
    hostile = ["/endless-headers", "/endless-line", "/huge-line", "/many-headers", "/drip-headers"]
    try:
        for i, path in enumerate(hostile):
            monitor.add_deployment_monitoring(f"bad{i}", plain.url(path), None, 0.2)
        for i in range(30):
            monitor.add_deployment_monitoring(f"ok{i}", plain.url("/health"), None, 0.2)
        monitor.start_monitoring()
        assert monitor.wait_for_checks("ok0", 12, timeout=20)
    finally:
        monitor.stop_monitoring()
    for i in range(30):
        history = monitor.get_health_history(f"ok{i}")
        assert len(history) >= 8 and all(r.success for r in history), i
        gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(history)]
        assert max(gaps) < 0.2 + 0.8, (i, max(gaps))  # generous; a held loop would be >= 2 s
    bad = monitor.get_health_history("bad0")
    assert bad and bad[-1].error_message == COUNT
