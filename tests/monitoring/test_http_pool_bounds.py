"""Connection pools stay bounded: per origin, in all, across many origins, with fair waits.

The servers are real (tests/support/origins.py: one subprocess listening on many 127.0.0.x
addresses) and count connections and requests themselves, so what is asserted is what
the network saw, not what the client believes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import psutil
import pytest

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks._fastclient import FastClient
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests.support.hostile import IdleDropServer
from tests.support.origins import Origins
from tests.support.wait import wait_until_async


@pytest.fixture(scope="module")
def origins() -> Iterator[Origins]:
    with Origins(200) as srv:
        yield srv


@pytest.fixture()
def srv(origins: Origins) -> Origins:
    origins.reset()
    return origins


def _waiting(c: DefaultHealthChecker) -> int:
    return sum(len(p.waiters) for p in _fast(c).slots.pools.values())


def _fast(c: DefaultHealthChecker) -> FastClient:
    return c._loops.clients[asyncio.get_running_loop()]


async def _sampling(c: DefaultHealthChecker, peak: dict[str, int], stop: asyncio.Event) -> None:
    """Record the most connections the client counted open, every loop turn or so."""
    while not stop.is_set():
        fast = c._loops.get(asyncio.get_running_loop())
        if fast is not None:
            peak["open"] = max(peak["open"], fast.stats()["open"])
        await asyncio.sleep(0.001)


async def _burst(
    c: DefaultHealthChecker, urls: list[str], timeout: float = 10
) -> tuple[list[HealthCheckResult], int]:
    """Check every URL at once; return the results and the client's peak open count."""
    peak = {"open": 0}
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sampling(c, peak, stop))
    try:
        results = await asyncio.gather(*(c.check_health_async(u, timeout) for u in urls))
    finally:
        stop.set()
        await sampler
    return list(results), peak["open"]


def _failed(results: list[HealthCheckResult]) -> list[Any]:
    return [(r.status, r.error_message) for r in results if not r.success][:3]


async def test_many_deployments_on_one_origin_share_a_handful_of_connections(
    srv: Origins,
) -> None:
    """500 deployments (paths) on one host, checked at once and then again: the pool is
    one per origin, not per deployment, and its limit holds the burst."""
    c = DefaultHealthChecker(pool_size_per_host=4)
    try:
        urls = [srv.url(0, f"/model/{i}/health?delay=0.002") for i in range(500)]
        for _ in range(2):
            results, peak = await _burst(c, urls)
            assert not _failed(results), _failed(results)
        stats = srv.stats()
        assert stats["requests"] == 1000
        assert 1 <= stats["accepted"] <= 4, stats  # reused across deployments and rounds
        assert stats["max_open"] <= 4 and peak <= 4
    finally:
        await c.aclose()


async def test_the_per_origin_limit_holds_under_a_burst(srv: Origins) -> None:
    c = DefaultHealthChecker(pool_size_per_host=6)
    try:
        urls = [srv.url(i % 3, f"/d/{i}?delay=0.05") for i in range(90)]
        results, _ = await _burst(c, urls)
        assert not _failed(results), _failed(results)
        stats = srv.stats()
        for origin in range(3):
            assert stats["max_open_by"][origin] == 6, stats  # reached, never passed
            assert stats["max_in_flight_by"][origin] == 6, stats
        assert stats["accepted"] == 18  # no churn: each origin's 6 were reused
    finally:
        await c.aclose()


async def test_the_total_limit_holds_across_many_origins_by_closing_idle_ones(
    srv: Origins,
) -> None:
    """50 origins, 20 connections in all: never more than 20 open (server and client
    agree), every check succeeds, and later rounds get in by closing the least recently
    used idle connections of other origins."""
    c = DefaultHealthChecker(max_connections=20)
    try:
        for _ in range(3):
            urls = [srv.url(i, f"/d/{j}?delay=0.01") for i in range(50) for j in range(4)]
            results, peak = await _burst(c, urls)
            assert not _failed(results), _failed(results)
            assert _fast(c).stats()["open"] <= 20
        stats = srv.stats()
        assert stats["requests"] == 600
        assert stats["max_open"] <= 20 and peak <= 20, (stats["max_open"], peak)
        assert stats["max_in_flight"] == 20  # the bound was reached, not just respected
        assert stats["accepted"] > 50, stats["accepted"]  # slots moved between origins
        # Sequential checks of 50 origins after that: each evicts the LRU idle one.
        for i in range(50):
            assert (await c.check_health_async(srv.url(i), 5)).success
        assert _fast(c).stats()["open"] <= 20
        assert srv.stats()["max_open"] <= 20
    finally:
        await c.aclose()


@pytest.mark.parametrize("per_origin", [False, True])
async def test_a_check_waiting_for_a_slot_times_out_saying_so(
    srv: Origins, per_origin: bool
) -> None:
    if per_origin:
        c = DefaultHealthChecker(pool_size_per_host=1)
        expected = "timeout after 0.5s (waiting for a connection: 1 open to this origin, "
        expected += "per-origin limit 1)"
    else:
        c = DefaultHealthChecker(max_connections=1)
        expected = "timeout after 0.5s (waiting for a connection: 1 open, limit 1)"
    try:
        hog = asyncio.create_task(c.check_health_async(srv.url(0, "/slow?delay=1.2"), 5))
        while srv.stats()["max_in_flight"] < 1:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        r = await c.check_health_async(srv.url(0 if per_origin else 1, "/health"), 0.5)
        elapsed = time.monotonic() - started
        assert r.status == "unhealthy" and r.error_message == expected, r
        assert r.details["error_type"] == "timeout"
        assert 0.45 <= elapsed < 1.5, elapsed  # within its own timeout, generous margin
        assert (await hog).success
        pools = _fast(c).slots.pools.values()
        assert not any(p.waiters for p in pools)  # the timed-out waiter was removed
        assert not _fast(c).slots.ready
    finally:
        await c.aclose()


@pytest.mark.parametrize("same_origin", [True, False])
async def test_a_cancelled_waiter_passes_its_connection_or_slot_on(
    srv: Origins, same_origin: bool
) -> None:
    """One connection in all; B waits, then is cancelled just after it was handed the
    connection (same origin) or the slot (another origin): C gets it at once."""
    c = DefaultHealthChecker(max_connections=1)
    try:
        b_url = srv.url(0 if same_origin else 1, "/b")
        c_url = srv.url(0 if same_origin else 2, "/c")
        b: asyncio.Task[HealthCheckResult] | None = None

        async def hog_then_cancel_b() -> HealthCheckResult:
            r = await c.check_health_async(srv.url(0, "/slow?delay=0.3"), 10)
            assert b is not None
            b.cancel()  # same step as the release: B was handed it, has not run yet
            return r

        hog = asyncio.create_task(hog_then_cancel_b())
        while srv.stats()["max_in_flight"] < 1:
            await asyncio.sleep(0.01)
        b = asyncio.create_task(c.check_health_async(b_url, 10))
        later = asyncio.create_task(c.check_health_async(c_url, 10))
        await wait_until_async(lambda: _waiting(c) >= 2, 5, "B and C to wait for the connection")
        assert _waiting(c) == 2
        started = time.monotonic()
        assert (await hog).success
        with pytest.raises(asyncio.CancelledError):
            await b
        r = await later
        assert r.success, r
        assert time.monotonic() - started < 1.0
        assert _fast(c).stats()["open"] == 1
        assert not any(p.waiters for p in _fast(c).slots.pools.values())
        paths = srv.stats()["requests"]
        assert paths == 2  # the hog and C; B never sent anything
    finally:
        await c.aclose()


async def test_waiting_origins_are_served_in_turn(srv: Origins) -> None:
    """Slots freed while several origins wait go round robin, first come first served
    within an origin: with 2 slots, 6 origins x 3 checks all finish, none starves."""
    c = DefaultHealthChecker(max_connections=2, pool_size_per_host=1)
    try:
        order: list[int] = []

        async def check(i: int) -> HealthCheckResult:
            r = await c.check_health_async(srv.url(i, f"/d?delay=0.02&o={i}"), 10)
            order.append(i)
            return r

        tasks = [asyncio.create_task(check(i)) for _ in range(3) for i in range(6)]
        results = await asyncio.gather(*tasks)
        assert not _failed(list(results)), _failed(list(results))
        # Each origin's last check is done before any origin's... the round robin means
        # the first 6 finished cover at least 4 origins (strict FIFO per origin would
        # let one origin hold its connection for all 3 of its checks).
        assert len(set(order[:6])) >= 4, order
        assert srv.stats()["max_open"] <= 2
    finally:
        await c.aclose()


async def _aiohttp_burst(urls: list[str], limit: int, per_host: int) -> None:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=per_host)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def get(url: str) -> int:
            async with session.get(url) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(get(u) for u in urls))
    assert statuses == [200] * len(urls)


@pytest.mark.parametrize(
    ("n_origins", "binding"), [(10, "total"), (2, "per origin")], ids=["total", "per-origin"]
)
async def test_same_burst_same_concurrency_as_aiohttp(
    srv: Origins, n_origins: int, binding: str
) -> None:
    """Differential: one burst through aiohttp's TCPConnector(limit, limit_per_host) and
    through DefaultHealthChecker(max_connections, pool_size_per_host): the server never
    sees more requests in flight than the limits from either, and the binding limit is
    reached by both. Ours also bounds the sockets it holds (aiohttp's limit counts
    requests in flight; its idle connections come on top)."""
    limit, per_host = 12, 3
    urls = [srv.url(i % n_origins, f"/d/{i}?delay=0.05") for i in range(60 * n_origins // 5)]
    await _aiohttp_burst(urls, limit, per_host)
    theirs = srv.reset()
    c = DefaultHealthChecker(max_connections=limit, pool_size_per_host=per_host)
    try:
        results, peak = await _burst(c, urls)
    finally:
        await c.aclose()
    assert not _failed(results), _failed(results)
    ours = srv.stats()
    expected = limit if binding == "total" else n_origins * per_host
    for name, seen in (("aiohttp", theirs), ("ours", ours)):
        assert seen["requests"] == len(urls), name
        assert seen["max_in_flight"] == expected, (name, binding, seen)
        assert max(seen["max_in_flight_by"].values()) <= per_host, (name, seen)
        if binding == "per origin":
            per_origin = [seen["max_in_flight_by"].get(i, 0) for i in range(n_origins)]
            assert per_origin == [per_host] * n_origins, (name, seen)
    assert ours["max_open"] <= limit and peak <= limit, (ours["max_open"], peak)
    assert max(ours["max_open_by"].values()) <= per_host
    # Saturated, ours moves a connection to another origin only when one holds none or
    # to even out the counts, not on every release.
    assert ours["accepted"] <= len(urls) // 3, (ours["accepted"], theirs["accepted"])


async def test_two_hundred_origins_at_once_keep_the_fds_under_the_bound(srv: Origins) -> None:
    """200 origins x 3 paths checked at once, 64 connections in all: the process's open
    file descriptors (psutil) never grow by more than the bound."""
    proc = psutil.Process()
    c = DefaultHealthChecker(max_connections=64)
    fds = {"peak": 0}
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            fds["peak"] = max(fds["peak"], proc.num_fds())
            await asyncio.sleep(0.002)

    try:
        assert (await c.check_health_async(srv.url(0), 5)).success  # the loop's own fds
        await c.release_loop()
        base = proc.num_fds()
        sampler = asyncio.create_task(sample())
        try:
            urls = [srv.url(i, f"/d/{j}?delay=0.01") for i in range(200) for j in range(3)]
            results = await asyncio.gather(*(c.check_health_async(u, 15) for u in urls))
        finally:
            stop.set()
            await sampler
        assert not _failed(list(results)), _failed(list(results))
        assert fds["peak"] - base <= 64, (fds["peak"], base)
        stats = srv.stats()
        assert stats["max_open"] <= 64 and stats["requests"] == 601
        assert stats["max_in_flight"] == 64
    finally:
        await c.aclose()


@pytest.mark.parametrize("max_connections", [100, 8, 3])
async def test_forgotten_connections_are_retried_within_the_total(max_connections: int) -> None:
    """A peer that silently forgets idle connections: each reused one goes silent and a
    fresh try races it. With room the fresh try takes a slot of its own; without, the
    silent one gives up its slot. Every check succeeds, no slot leaks, the bound holds."""
    with IdleDropServer("drop", idle_s=0.1) as drop:
        c = DefaultHealthChecker(max_connections=max_connections)
        peak = {"open": 0}
        stop = asyncio.Event()
        try:
            sampler = asyncio.create_task(_sampling(c, peak, stop))

            results: list[HealthCheckResult] = []
            for _ in range(3):
                # Six checks at once, in rounds: every pooled connection then sits idle past
                # the peer's bound before the next round reuses it. Six sequences left to
                # drift apart reused some at once on a loaded machine (5 forgotten, not 6).
                checks = (c.check_health_async(drop.url(), 1.0) for _ in range(6))
                results += await asyncio.gather(*checks)
                await asyncio.sleep(0.15)  # longer than the peer's idle bound
            stop.set()
            await sampler
            assert not _failed(results), _failed(results)
            assert drop.forgotten >= 6  # the case was really exercised
            fast = _fast(c)
            # Aborted sockets close some loop turns later: a loaded machine spreads those
            # over more than any fixed pause.
            await wait_until_async(
                lambda: fast.stats()["open"] == len(fast.conns), 5, "aborted sockets to close"
            )
            assert peak["open"] <= max_connections
            assert all(p.open >= 0 for p in fast.slots.pools.values())
        finally:
            await c.aclose()


def test_limits_are_validated_by_name() -> None:
    for field in ("max_connections", "pool_size_per_host"):
        for bad in (0, -1, 1.5, True, "10"):
            with pytest.raises(ConfigError) as info:
                DefaultHealthChecker(**{field: bad})  # type: ignore[arg-type]
            assert info.value.field == field


def test_default_total_is_a_quarter_of_the_fd_limit() -> None:
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))\n"
        "from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker\n"
        "c = DefaultHealthChecker()\n"
        "print(c.max_connections, c.pool_size_per_host)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (20, hard))\n"
        "print(DefaultHealthChecker().max_connections)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == ["250", "100", "8"], out
