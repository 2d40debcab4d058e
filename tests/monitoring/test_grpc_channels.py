"""gRPC channels are bounded and closed: the least recently used goes when the table is
full, a removed deployment's goes with it, and the monitor's stop closes the rest. Seen from
the outside, as the TCP connections this process holds to real grpc.health.v1 servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.checks.grpc import GrpcChecker
from crackseg.utils.deployment.monitoring.checks.plan import build_plan
from tests.support.grpc_health import SERVING, HealthServer
from tests.support.wait import wait_until


@pytest.fixture
def servers() -> Iterator[list[HealthServer]]:
    made = [HealthServer() for _ in range(3)]
    for srv in made:
        srv.set("", SERVING)
        srv.set("crackseg", SERVING)
    yield made
    for srv in made:
        srv.stop()


async def _until(fn: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``fn`` while the loop runs (the channels close on it)."""
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_the_least_recently_used_channel_is_closed_when_the_table_is_full(
    servers: list[HealthServer],
) -> None:
    a, b, c = servers
    checker = GrpcChecker(max_channels=2)
    plans = {srv: build_plan(url=f"grpc://127.0.0.1:{srv.port}", type="grpc") for srv in servers}

    def open_to() -> tuple[int, ...]:
        return tuple(srv.client_connections() for srv in servers)

    async def run() -> None:
        try:
            for srv in (a, b):
                assert (await checker.check(plans[srv], 5.0)).success
            assert open_to() == (1, 1, 0)
            assert (await checker.check(plans[c], 5.0)).success  # a is the oldest: closed
            await _until(lambda: open_to() == (0, 1, 1), "a's channel to close")
            assert checker.open_channels() == 2
            assert (await checker.check(plans[b], 5.0)).success  # b used: c is now the oldest
            assert (await checker.check(plans[a], 5.0)).success
            await _until(lambda: open_to() == (1, 1, 0), "c's channel to close")
            assert checker.open_channels() == 2
        finally:
            await checker.aclose()
        await _until(lambda: open_to() == (0, 0, 0), "every channel to close at aclose")
        assert checker.open_channels() == 0

    asyncio.run(run())


def _client_ports(srv: HealthServer) -> set[int]:
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == srv.port
    }


def test_a_removed_deployments_channel_is_closed_once_no_other_checks_it(
    servers: list[HealthServer],
) -> None:
    shared, alone, _ = servers
    monitor = DeploymentHealthMonitor()
    try:
        url = f"grpc://127.0.0.1:{shared.port}"
        monitor.add_deployment_monitoring("model", url, check_interval=0.2, type="grpc",
                                          service="crackseg")  # fmt: skip
        monitor.add_deployment_monitoring("server", url, check_interval=0.2, type="grpc")
        monitor.add_deployment_monitoring("other", f"grpc://127.0.0.1:{alone.port}",
                                          check_interval=0.2, type="grpc")  # fmt: skip
        monitor.start_monitoring()
        for dep in ("model", "server", "other"):
            assert monitor.wait_for_checks(dep, 2, 20)
            assert monitor.get_deployment_status(dep)["health_status"] == "healthy"
        assert alone.client_connections() == 1
        before = _client_ports(shared)
        assert len(before) == 1  # one channel for the two deployments of one target

        assert monitor.remove_deployment_monitoring("other")
        wait_until(lambda: alone.client_connections() == 0, 10, "the removed one's channel")

        # "server" still checks the shared target: its channel (and connection) stay
        assert monitor.remove_deployment_monitoring("model")
        seen = len(monitor.get_health_history("server"))
        assert monitor.wait_for_checks("server", seen + 2, 20)
        assert _client_ports(shared) == before

        assert monitor.remove_deployment_monitoring("server")
        wait_until(lambda: shared.client_connections() == 0, 10, "the last user's channel")
    finally:
        monitor.close()


def test_stopping_the_monitor_closes_its_channels(servers: list[HealthServer]) -> None:
    srv = servers[0]
    monitor = DeploymentHealthMonitor()
    try:
        monitor.add_deployment_monitoring("model", f"grpc://127.0.0.1:{srv.port}",
                                          check_interval=0.2, type="grpc")  # fmt: skip
        monitor.start_monitoring()
        assert monitor.wait_for_checks("model", 2, 20)
        assert srv.client_connections() == 1
        monitor.stop_monitoring()
        wait_until(lambda: srv.client_connections() == 0, 10, "the channel to close at stop")
    finally:
        monitor.close()
