"""The monitor's task-free start (``DefaultHealthChecker.start_check``) answers every hostile
case exactly as ``check_health_async`` does, on http and https (differential, issue 14), and
a check in flight on it leaves nothing for the garbage collector to promote."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

import pytest

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests.support.hostile import HostileServer
from tests.support.hostile_cases import CASES, DIFF_TIMEOUT, servers, shape, tls_context

__all__ = ["servers", "tls_context"]  # the fixtures, shared with the hostile cases


@pytest.mark.parametrize("path", list(CASES))
def test_task_free_start_answers_as_the_coroutine(
    path: str, servers: dict[str, HostileServer]
) -> None:
    async def main() -> None:
        c = DefaultHealthChecker(verify_tls=False, follow_redirects="redirect" in path)
        answers: asyncio.Queue[HealthCheckResult] = asyncio.Queue()
        probe = c.probe(answers.put_nowait)  # one probe for every check: it is reusable
        try:
            for scheme, srv in servers.items():
                # Both on a reused connection: the case the task-free start is for.
                assert (await c.check_health_async(srv.url("/health"), 2)).success
                assert c.start_check(probe, srv.url(path), DIFF_TIMEOUT), scheme
                assert not c.start_check(probe, srv.url(path), DIFF_TIMEOUT), "one at a time"
                fast = await asyncio.wait_for(answers.get(), DIFF_TIMEOUT + 2)
                assert not probe.busy
                assert (await c.check_health_async(srv.url("/health"), 2)).success
                slow = await c.check_health_async(srv.url(path), DIFF_TIMEOUT)
                assert shape(fast) == shape(slow), (scheme, fast, slow)
                assert fast.details.get("redirects") == slow.details.get("redirects")
        finally:
            await c.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("path", list(CASES))
def test_the_blocking_check_answers_as_the_coroutine(
    path: str, servers: dict[str, HostileServer]
) -> None:
    """``check_health`` starts on an idle connection without a task (the same probe path):
    the same answer as ``check_health_async`` for every hostile case, on http and https."""
    c = DefaultHealthChecker(verify_tls=False, follow_redirects="redirect" in path)
    try:
        for scheme, srv in servers.items():
            assert c.check_health(srv.url("/health"), 2).success  # a connection to reuse
            blocking = c.check_health(srv.url(path), DIFF_TIMEOUT)

            async def coroutine(url: str = srv.url(path)) -> HealthCheckResult:
                return await c.check_health_async(url, DIFF_TIMEOUT)

            assert c.check_health(srv.url("/health"), 2).success
            other = c._private.run(coroutine(), DIFF_TIMEOUT)
            assert shape(blocking) == shape(other), (scheme, blocking, other)
    finally:
        c.close()


def test_without_an_idle_connection_it_declines_and_the_coroutine_runs() -> None:
    async def main() -> None:
        c = DefaultHealthChecker()
        try:
            probe = c.probe(lambda r: None)
            assert not c.start_check(probe, "http://127.0.0.1:9/health", 1)
            r = await c.check_health_async("http://127.0.0.1:9/health", 1)
            assert r.error_message == "connection refused"
            assert not c.start_check(probe, "not a url", 1)
        finally:
            await c.aclose()

    asyncio.run(main())


# Answers each connection's first two requests, then holds every next one in flight.
_HOLDING_SERVER = r"""
import asyncio
async def serve(reader, writer):
    for _ in range(2):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    await reader.read()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def test_checks_in_flight_leave_nothing_for_the_collector_to_promote() -> None:
    """What a check allocates while in flight is alive when a young collection runs, so it
    is promoted; at 100,000 deployments those promotions made full collections of every
    deployment's objects (~0.7 s each) run several times a minute. Before the probe, a
    check in flight left ten tracked objects (a future, partials, a closure and its cells)."""
    n = 40
    server = subprocess.Popen([sys.executable, "-c", _HOLDING_SERVER], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/health"

        async def main() -> int:
            c = DefaultHealthChecker()
            answers: asyncio.Queue[HealthCheckResult] = asyncio.Queue()
            probes = [c.probe(answers.put_nowait) for _ in range(n)]
            try:
                # n connections, each answered once and idle now.
                warm = await asyncio.gather(*(c.check_health_async(url, 5) for _ in range(n)))
                assert all(r.success for r in warm)
                for p in probes:  # each probe's first check: answered (the second request)
                    assert c.start_check(p, url, 30)
                for _ in range(n):
                    assert (await asyncio.wait_for(answers.get(), 5)).success
                gc.collect()
                gc.disable()
                try:
                    for p in probes:  # held: in flight until the client closes
                        assert c.start_check(p, url, 30)
                    for _ in range(5):
                        await asyncio.sleep(0)  # the writes go out, nothing comes back
                    before = len(gc.get_objects(generation=1))
                    gc.collect(0)  # a young collection: what survives it is on its way up
                    grown = len(gc.get_objects(generation=1)) - before
                finally:
                    gc.enable()
                assert answers.empty() and all(p.busy for p in probes)
                return grown
            finally:
                await c.aclose()

        grown = asyncio.run(main())
        assert grown < n // 4, f"{grown} tracked objects survive for {n} checks in flight"
    finally:
        server.kill()
        server.wait()
