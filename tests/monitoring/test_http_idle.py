"""Idle connections: dropped past the idle bound; a reused connection the peer forgot is
retried once on a fresh one, within the same timeout (no false failures)."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import pytest

from crackseg.utils.deployment.monitoring.checks import _fastclient
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests.support.hostile import HostileServer, IdleDropServer
from tests.support.servers import self_signed_cert
from tests.support.wait import poll

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory, openssl_bin: str) -> ssl.SSLContext:
    cert, key = self_signed_cert(Path(tmp_path_factory.mktemp("tls")), openssl_bin)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def _sequences(c: DefaultHealthChecker, url: str, parallel: int, each: int) -> list:
    async def one() -> list:
        out = []
        for _ in range(each):
            started = time.monotonic()
            r = await c.check_health_async(url, TIMEOUT)
            out.append((r, time.monotonic() - started))
            await asyncio.sleep(0.15)  # longer than the peer's idle bound
        return out

    return [x for seq in await asyncio.gather(*(one() for _ in range(parallel))) for x in seq]


async def test_300_checks_against_a_peer_that_silently_drops_idle_connections() -> None:
    with IdleDropServer("drop", idle_s=0.1) as srv:
        c = DefaultHealthChecker()
        try:
            results = await _sequences(c, srv.url(), parallel=30, each=10)
        finally:
            await c.aclose()
    assert len(results) == 300
    failed = [r for r, _ in results if not r.success]
    assert not failed, failed[:3]
    assert srv.forgotten >= 30  # the case was really exercised
    assert max(t for _, t in results) < TIMEOUT + 0.5


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_reset_and_silence_on_reused_connections_are_retried(
    scheme: str, tls_context: ssl.SSLContext
) -> None:
    ctx = tls_context if scheme == "https" else None
    for mode in ("reset", "drop"):
        with IdleDropServer(mode, idle_s=0.1, ssl_context=ctx) as srv:
            c = DefaultHealthChecker(verify_tls=False)
            try:
                results = await _sequences(c, srv.url(), parallel=3, each=4)
            finally:
                await c.aclose()
        assert all(r.success for r, _ in results), (mode, [r for r, _ in results if not r.success])
        assert srv.forgotten >= 3, mode
        assert max(t for _, t in results) < TIMEOUT + 0.5


async def test_a_slow_answer_on_a_reused_connection_is_not_cut_short() -> None:
    """Silence past the stall point starts a fresh try, but the old connection still
    counts: a server that answers late is healthy, not a false timeout."""
    from tests.support.servers import HealthServer

    with HealthServer() as srv:
        c = DefaultHealthChecker()
        try:
            assert (await c.check_health_async(srv.url("/health"), 1)).success
            r = await c.check_health_async(srv.url("/slow?delay=0.7"), 1)
            assert r.success, r
        finally:
            await c.aclose()


async def test_idle_connections_are_closed_past_the_idle_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fastclient, "_IDLE_MAX_S", 0.3)
    with HostileServer() as srv:
        c = DefaultHealthChecker()
        try:
            for _ in range(3):
                assert (await c.check_health_async(srv.url(), 2)).success
            assert srv.connections == 1  # kept and reused while fresh
            fast = c._loops.clients[asyncio.get_running_loop()]
            assert fast.stats() == {"open": 1, "idle": 1}
            # Nobody checks: the sweep closes it once idle past the bound.
            deadline = time.monotonic() + 3
            while fast.stats()["idle"] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the loop must run for the sweep to
            assert fast.stats()["idle"] == 0
            assert fast.stats()["open"] == 0
            assert (await c.check_health_async(srv.url(), 2)).success
            assert srv.connections == 2
        finally:
            await c.aclose()


def test_tls_connections_of_an_ended_loop_are_released(tls_context: ssl.SSLContext) -> None:
    """A loop that ended without release_loop(): its TLS sockets are closed once the
    checker is used again, as plain ones are."""
    with HostileServer(tls_context) as srv:
        c = DefaultHealthChecker(verify_tls=False)
        try:
            loop = asyncio.new_event_loop()
            assert loop.run_until_complete(c.check_health_async(srv.url(), 5)).success
            loop.close()
            assert c.check_health(srv.url(), 5).success  # another loop: the old is abandoned
            assert srv.connections == 2
            assert poll(lambda: srv.open_connections == 1), srv.open_connections
        finally:
            c.close()
