"""DefaultHealthChecker: keep-alive reuse, stale connections, loops, threads, close()."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests.support.servers import (  # noqa: F401  (fixtures)
    HealthServer,
    health_server,
    raw_server_factory,
)

THREAD_NAME = "crackseg-health-checker"


def _checker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


@pytest.fixture()
def checker() -> Iterator[DefaultHealthChecker]:
    c = DefaultHealthChecker()
    yield c
    c.close()


def test_keep_alive_reuses_one_connection() -> None:
    with HealthServer() as srv:
        c = DefaultHealthChecker()
        try:
            for _ in range(50):
                assert c.check_health(srv.url("/health")).success
            assert srv.hits["/health"] == 50
            assert len(srv.connections) == 1
        finally:
            c.close()


async def test_connections_per_host_are_bounded() -> None:
    with HealthServer() as srv:
        c = DefaultHealthChecker(pool_size_per_host=4)
        try:
            urls = [srv.url("/slow?delay=0.2")] * 12
            results = await asyncio.gather(*(c.check_health_async(u, 10) for u in urls))
            assert all(r.success for r in results)
            assert len(srv.connections) == 4
        finally:
            await c.aclose()


def test_stale_keep_alive_connection_is_retried(
    checker: DefaultHealthChecker,
    raw_server_factory,  # noqa: F811
) -> None:
    # The server answers one request per connection and closes the next one unanswered,
    # as a server does whose idle timeout fires just as the check is written.
    srv = raw_server_factory("stale")
    for _ in range(5):
        result = checker.check_health(srv.url(), timeout=5)
        assert result.success, result.error_message
    assert srv.connections == 5


def test_server_closing_idle_connections_is_transparent() -> None:
    with HealthServer(keepalive_timeout=0.2) as srv:
        c = DefaultHealthChecker()
        try:
            assert c.check_health(srv.url("/health")).success
            deadline = time.monotonic() + 10
            # Wait until the server has dropped the idle connection (seen by the client).
            while any(f.stats()["open"] for f in c._loops.clients.values()):
                assert time.monotonic() < deadline, "server never closed the idle connection"
                time.sleep(0.05)
            assert c.check_health(srv.url("/health")).success
            assert len(srv.connections) == 2
        finally:
            c.close()


async def test_sync_api_from_a_thread_while_a_loop_runs(
    health_server: HealthServer,  # noqa: F811
) -> None:
    c = DefaultHealthChecker()
    try:
        url = health_server.url("/health")
        sync_result, async_result = await asyncio.gather(
            asyncio.to_thread(c.check_health, url, 5), c.check_health_async(url, 5)
        )
        assert sync_result.success and async_result.success
        assert await asyncio.to_thread(c.wait_for_healthy, url, 5, 1)
        # One pool for this loop, one for the private loop behind the sync facade.
        assert len(c._loops.clients) == 2
    finally:
        await c.aclose()
    assert not _checker_threads()
    assert not c._loops.clients


def test_sync_api_from_many_threads(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            ok = checker.check_health(health_server.url("/health"), timeout=10).success
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [True] * 80


def test_one_checker_serves_loops_in_other_threads(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    url = health_server.url("/health")

    async def on_loop() -> bool:
        try:
            return (await checker.check_health_async(url, 5)).success
        finally:
            await checker.release_loop()

    outcomes: list[bool] = []
    thread = threading.Thread(target=lambda: outcomes.append(asyncio.run(on_loop())))
    thread.start()
    thread.join(timeout=30)
    assert outcomes == [True]
    assert checker.check_health(url).success
    assert len(checker._loops.clients) == 1  # only the private loop's pool is left


def test_close_is_idempotent_and_leaves_no_thread(
    health_server: HealthServer,  # noqa: F811
) -> None:
    c = DefaultHealthChecker()
    assert c.check_health(health_server.url("/health")).success
    assert len(_checker_threads()) == 1
    c.close()
    c.close()
    assert not _checker_threads()
    # Usable again afterwards; resources come back lazily.
    assert c.check_health(health_server.url("/health")).success
    c.close()
    assert not _checker_threads()


async def test_aclose_fails_pending_checks_without_hanging(
    health_server: HealthServer,  # noqa: F811
) -> None:
    c = DefaultHealthChecker()
    pending = asyncio.create_task(c.check_health_async(health_server.url("/hang"), 30))
    await asyncio.sleep(0)
    while health_server.hits["/hang"] == 0:
        await asyncio.sleep(0.01)
    start = time.monotonic()
    await c.aclose()
    result = await asyncio.wait_for(pending, 5)
    assert result.error_message == "checker closed during the check"
    assert time.monotonic() - start < 5
    await c.aclose()


async def test_release_loop_keeps_the_checker_usable(
    health_server: HealthServer,  # noqa: F811
) -> None:
    c = DefaultHealthChecker()
    try:
        url = health_server.url("/health")
        assert (await c.check_health_async(url, 5)).success
        assert await asyncio.to_thread(lambda: c.check_health(url).success)
        await c.release_loop()
        assert len(c._loops.clients) == 1  # only the private loop's pool is left
        assert len(_checker_threads()) == 1
        assert (await c.check_health_async(url, 5)).success
    finally:
        await c.aclose()
    assert not _checker_threads()
