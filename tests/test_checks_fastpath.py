"""The monitor's task-free start (``DefaultHealthChecker.start_check``) answers every hostile
case exactly as ``check_health_async`` does, on http and https (differential, issue 14)."""

from __future__ import annotations

import asyncio

import pytest

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests._hostile import HostileServer
from tests.test_checks_hostile import CASES, DIFF_TIMEOUT, _shape, servers, tls_context

__all__ = ["servers", "tls_context"]  # the fixtures, shared with the hostile cases


@pytest.mark.parametrize("path", list(CASES))
def test_task_free_start_answers_as_the_coroutine(
    path: str, servers: dict[str, HostileServer]
) -> None:
    async def main() -> None:
        c = DefaultHealthChecker(verify_tls=False, follow_redirects="redirect" in path)
        loop = asyncio.get_running_loop()
        try:
            for scheme, srv in servers.items():
                # Both on a reused connection: the case the task-free start is for.
                assert (await c.check_health_async(srv.url("/health"), 2)).success
                fut: asyncio.Future[HealthCheckResult] = loop.create_future()
                assert c.start_check(srv.url(path), DIFF_TIMEOUT, fut.set_result), scheme
                fast = await asyncio.wait_for(fut, DIFF_TIMEOUT + 2)
                assert (await c.check_health_async(srv.url("/health"), 2)).success
                slow = await c.check_health_async(srv.url(path), DIFF_TIMEOUT)
                assert _shape(fast) == _shape(slow), (scheme, fast, slow)
                assert fast.details.get("redirects") == slow.details.get("redirects")
        finally:
            await c.aclose()

    asyncio.run(main())


def test_without_an_idle_connection_it_declines_and_the_coroutine_runs() -> None:
    async def main() -> None:
        c = DefaultHealthChecker()
        try:
            assert not c.start_check("http://127.0.0.1:9/health", 1, lambda r: None)
            r = await c.check_health_async("http://127.0.0.1:9/health", 1)
            assert r.error_message == "connection refused"
            assert not c.start_check("not a url", 1, lambda r: None)
        finally:
            await c.aclose()

    asyncio.run(main())
