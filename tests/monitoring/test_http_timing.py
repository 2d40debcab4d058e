"""DefaultHealthChecker: whole-check timeouts, concurrency and wait_for_healthy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests.support.servers import HealthServer, free_port, health_server  # noqa: F401

# Other test suites share this 2-core machine: bounds are generous on purpose.
MARGIN_S = 2.5


@pytest.fixture()
def checker() -> Iterator[DefaultHealthChecker]:
    c = DefaultHealthChecker()
    yield c
    c.close()


@pytest.fixture()
async def achecker() -> AsyncIterator[DefaultHealthChecker]:
    c = DefaultHealthChecker()
    yield c
    await c.aclose()


@pytest.mark.parametrize("path", ["/hang", "/trickle"])
def test_timeout_bounds_the_whole_check(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
    path: str,
) -> None:
    # /trickle sends headers and then a byte every 0.1 s: a per-read timeout never fires.
    start = time.monotonic()
    result = checker.check_health(health_server.url(path), timeout=1)
    elapsed = time.monotonic() - start
    assert result.error_message == "timeout after 1s"
    assert result.details["error_type"] == "timeout"
    assert 0.9 <= elapsed < 1 + MARGIN_S
    assert 900 <= result.response_time_ms < (1 + MARGIN_S) * 1000


def test_fractional_timeout_is_named_as_given(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    result = checker.check_health(health_server.url("/hang"), timeout=0.3)
    assert result.error_message == "timeout after 0.3s"


def test_response_time_is_measured(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    result = checker.check_health(health_server.url("/slow?delay=0.3"), timeout=10)
    assert result.success
    assert 290 <= result.response_time_ms < 300 + MARGIN_S * 1000


async def test_slow_check_does_not_block_a_concurrent_one(
    achecker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    slow = asyncio.create_task(achecker.check_health_async(health_server.url("/hang"), 3))
    quick = asyncio.create_task(achecker.check_health_async(health_server.url("/health"), 5))
    done, _ = await asyncio.wait({slow, quick}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {quick}
    assert quick.result().success
    assert quick.result().response_time_ms < 2000
    assert not slow.done()
    result = await slow
    assert result.error_message == "timeout after 3s"


async def test_many_concurrent_checks_on_one_loop(
    achecker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    urls = [health_server.url(p) for p in ("/health", "/fail", "/degraded503")] * 30
    results = await asyncio.gather(*(achecker.check_health_async(u, 10) for u in urls))
    assert [r.status for r in results[:3]] == ["healthy", "unhealthy", "degraded"]
    assert sum(r.success for r in results) == 30


def test_wait_for_healthy_returns_once_healthy(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    path = "/ready-after/wait1/3"  # 503 three times, then 200
    start = time.monotonic()
    assert checker.wait_for_healthy(health_server.url(path), max_wait=30, interval=0.2)
    elapsed = time.monotonic() - start
    assert health_server.hits[path] == 4
    assert 0.55 <= elapsed < 0.6 + MARGIN_S


def test_wait_for_healthy_immediately_healthy(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    start = time.monotonic()
    assert checker.wait_for_healthy(health_server.url("/health"), max_wait=30, interval=5)
    assert time.monotonic() - start < MARGIN_S


def test_wait_for_healthy_gives_up_at_max_wait(checker: DefaultHealthChecker) -> None:
    start = time.monotonic()
    url = f"http://127.0.0.1:{free_port()}/health"
    assert not checker.wait_for_healthy(url, max_wait=1.5, interval=0.4)
    assert 1.4 <= time.monotonic() - start < 1.5 + MARGIN_S


def test_wait_for_healthy_clips_a_hanging_check(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    # The per-check timeout (10 s) is clipped to what is left of max_wait.
    start = time.monotonic()
    assert not checker.wait_for_healthy(health_server.url("/hang"), max_wait=1, interval=5)
    assert 0.9 <= time.monotonic() - start < 1 + MARGIN_S


async def test_wait_for_healthy_async(
    achecker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    url = health_server.url("/ready-after/wait2/1")
    assert await achecker.wait_for_healthy_async(url, max_wait=20, interval=0.1)
    start = time.monotonic()
    assert not await achecker.wait_for_healthy_async(
        health_server.url("/fail"), max_wait=0.8, interval=0.3
    )
    assert 0.7 <= time.monotonic() - start < 0.8 + MARGIN_S
