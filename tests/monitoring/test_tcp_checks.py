"""TCP checks (plain and TLS) against real listeners on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.plan import build_plan
from crackseg.utils.deployment.monitoring.checks.tcp import TcpChecker
from crackseg.utils.deployment.monitoring.checks.tls import TlsOptions
from tests.support.tls_ca import TestCA


def check(url: str, timeout: float = 5.0, **fields: Any) -> HealthCheckResult:
    plan = build_plan(url=url, type="tcp", **fields)
    return asyncio.run(TcpChecker().check(plan, timeout))


class Listener:
    """Accepts connections (TLS with ``ctx``) in a thread; counts the handshakes done."""

    def __init__(self, ctx: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ctx = ctx
        self.handshakes = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                if self.ctx is None:
                    continue
                try:
                    with self.ctx.wrap_socket(conn, server_side=True) as tls:
                        self.handshakes += 1
                        with contextlib.suppress(OSError):
                            tls.recv(1)
                except (ssl.SSLError, OSError) as exc:
                    self.errors.append(str(exc))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    srv = Listener()
    yield srv
    srv.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_open_port_is_healthy_and_a_closed_one_refused(listener: Listener) -> None:
    result = check(f"tcp://127.0.0.1:{listener.port}")
    assert (result.success, result.status) == (True, "healthy"), result
    assert result.details["connected"] is True
    closed = check(f"tcp://127.0.0.1:{_closed_port()}")
    assert (closed.status, closed.error_message) == ("unhealthy", "connection refused")


def test_a_port_that_must_stay_closed(listener: Listener) -> None:
    """``[CONNECTED] == false`` reads a refused connection as the healthy answer."""
    rule = ["[CONNECTED] == false"]
    assert check(f"tcp://127.0.0.1:{_closed_port()}", conditions=rule).success
    opened = check(f"tcp://127.0.0.1:{listener.port}", conditions=rule)
    assert (opened.status, opened.error_message) == (
        "unhealthy",
        "[CONNECTED] == false: got true",
    )


def test_a_connect_that_hangs_ends_at_the_timeout() -> None:
    # A listener whose backlog is full leaves further connects hanging (SYN unanswered).
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = []
        try:
            for _ in range(8):
                f = socket.socket()
                f.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    f.connect(full.getsockname())
                fillers.append(f)
            started = time.monotonic()
            result = check(f"tcp://127.0.0.1:{full.getsockname()[1]}", timeout=0.5)
            took = time.monotonic() - started
        finally:
            for f in fillers:
                f.close()
    if result.success:
        pytest.skip("this kernel accepted past the backlog; nothing hangs here")
    assert result.error_message == "timeout after 0.5s", result
    assert took < 2.0


def _server_ctx(ca: TestCA, days: int, require_client: bool = False) -> ssl.SSLContext:
    leaf = ca.issue(f"tcp-server-{days}", days=days)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ca.cert)
    return ctx


def test_tls_records_the_earliest_expiry_of_the_chain(openssl_bin: str, tmp_path: Path) -> None:
    """The CA ends in 2 days, the leaf in 10: the chain's earliest is the CA's."""
    ca = TestCA(openssl_bin, tmp_path, days=2)
    srv = Listener(_server_ctx(ca, days=10))
    try:
        result = check(f"tcp://127.0.0.1:{srv.port}", tls=TlsOptions(ca_file=str(ca.cert)))
        assert result.success, result
        left = result.details["cert_not_after"] - time.time()
        assert 86_400 < left <= 2 * 86_400 + 60, left
    finally:
        srv.close()


def test_a_certificate_ending_in_3_days_fails_a_7_day_condition(
    openssl_bin: str, tmp_path: Path
) -> None:
    ca = TestCA(openssl_bin, tmp_path)
    srv = Listener(_server_ctx(ca, days=3))
    try:
        tls = TlsOptions(ca_file=str(ca.cert))
        url = f"tcp://127.0.0.1:{srv.port}"
        assert check(url, tls=tls, conditions=["[CERTIFICATE_EXPIRATION] > 48h"]).success
        result = check(url, tls=tls, conditions=["[CERTIFICATE_EXPIRATION] > 7d"])
        assert (result.status, result.error_message) == (
            "unhealthy",
            "[CERTIFICATE_EXPIRATION] > 7d: got 2d23h",
        )
    finally:
        srv.close()


def test_verify_off_accepts_an_unknown_ca_and_still_reads_the_expiry(
    openssl_bin: str, tmp_path: Path
) -> None:
    ca = TestCA(openssl_bin, tmp_path)
    srv = Listener(_server_ctx(ca, days=3))
    try:
        url = f"tcp://127.0.0.1:{srv.port}"
        refused = check(url, tls=TlsOptions())  # the system's trust: this CA is unknown
        assert refused.status == "unhealthy"
        assert refused.error_message == (
            "TLS certificate verification failed: unable to get local issuer certificate"
        )
        result = check(url, tls=TlsOptions(verify=False))
        assert result.success, result
        assert 2 * 86_400 < result.details["cert_not_after"] - time.time() <= 3 * 86_400 + 60
    finally:
        srv.close()


def test_mtls_needs_the_client_certificate(openssl_bin: str, tmp_path: Path) -> None:
    ca = TestCA(openssl_bin, tmp_path)
    client = ca.issue("tcp-client", client=True)
    srv = Listener(_server_ctx(ca, days=30, require_client=True))
    try:
        url = f"tcp://127.0.0.1:{srv.port}"
        tls = TlsOptions(ca_file=str(ca.cert), cert_file=str(client.cert),
                         key_file=str(client.key))  # fmt: skip
        assert check(url, tls=tls).success
        assert srv.handshakes == 1
        check(url, tls=TlsOptions(ca_file=str(ca.cert)))
        # TLS 1.3 finishes the client's side before the server refuses the missing
        # certificate: the server's refusal is what tells.
        deadline = time.monotonic() + 5
        while not srv.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.errors and "certificate" in srv.errors[0].lower(), srv.errors
    finally:
        srv.close()


def test_every_plan_checker_satisfies_the_interface() -> None:
    from crackseg.utils.deployment.monitoring.checks.grpc import GrpcChecker
    from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
    from crackseg.utils.deployment.monitoring.checks.plan import PlanChecker, PlanHttpChecker

    assert isinstance(TcpChecker(), PlanChecker)
    assert isinstance(GrpcChecker(), PlanChecker)
    checker = DefaultHealthChecker()
    assert isinstance(checker, PlanHttpChecker)
    checker.close()
