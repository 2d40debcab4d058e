"""gRPC checks against a real grpc.health.v1 server on 127.0.0.1 (grpcio's own servicer)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.grpc import GrpcChecker
from crackseg.utils.deployment.monitoring.checks.plan import build_plan
from crackseg.utils.deployment.monitoring.checks.tls import TlsOptions
from tests.support.grpc_health import NOT_SERVING, SERVING, HealthServer
from tests.support.tls_ca import TestCA


@pytest.fixture
def server() -> Iterator[HealthServer]:
    srv = HealthServer()
    srv.set("", SERVING)
    srv.set("crackseg", SERVING)
    yield srv
    srv.stop()


def check(url: str, timeout: float = 5.0, **fields: Any) -> HealthCheckResult:
    plan = build_plan(url=url, type="grpc", **fields)
    checker = GrpcChecker()

    async def run() -> HealthCheckResult:
        try:
            return await checker.check(plan, timeout)
        finally:
            await checker.aclose()

    return asyncio.run(run())


def test_serving_is_healthy_and_not_serving_is_not(server: HealthServer) -> None:
    url = f"grpc://127.0.0.1:{server.port}"
    result = check(url, service="crackseg")
    assert (result.success, result.status) == (True, "healthy"), result
    assert result.details["grpc_status"] == "SERVING"

    server.set("crackseg", NOT_SERVING)
    result = check(url, service="crackseg")
    assert (result.success, result.status) == (False, "unhealthy")
    assert result.error_message == "gRPC health: NOT_SERVING"
    # the server as a whole ("") still serves: the question asked is the one answered
    assert check(url).success


def test_an_unknown_service_is_unhealthy_with_the_reason(server: HealthServer) -> None:
    result = check(f"grpc://127.0.0.1:{server.port}", service="nope")
    assert result.status == "unhealthy"
    assert result.error_message == "gRPC health: unknown service 'nope' (NOT_FOUND)"
    assert result.details["grpc_code"] == "NOT_FOUND"


def test_a_server_that_is_down_reads_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    started = time.monotonic()
    result = check(f"grpc://127.0.0.1:{port}", timeout=5.0)
    assert result.status == "unhealthy"
    assert result.error_message == "connection refused", result
    assert result.details["error_type"] == "connection_refused"
    assert time.monotonic() - started < 5.0  # refused at once, not after the timeout


def test_a_server_that_never_answers_times_out_within_the_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)  # accepts TCP, never speaks HTTP/2
        started = time.monotonic()
        result = check(f"grpc://127.0.0.1:{s.getsockname()[1]}", timeout=0.5)
        took = time.monotonic() - started
    assert result.status == "unhealthy"
    assert result.details["error_type"] in ("timeout", "unavailable"), result
    assert took < 3.0


def test_conditions_read_the_response_time(server: HealthServer) -> None:
    url = f"grpc://127.0.0.1:{server.port}"
    assert check(url, conditions=["[RESPONSE_TIME] < 5000"]).success
    result = check(url, conditions=["[RESPONSE_TIME] < 0"])
    assert result.status == "unhealthy"
    assert result.error_message is not None
    assert result.error_message.startswith("[RESPONSE_TIME] < 0: got ")


def _secure_server(ca: TestCA, *, require_client: bool) -> HealthServer:
    leaf = ca.issue("grpc-server", days=3)
    credentials = grpc.ssl_server_credentials(
        [(leaf.key.read_bytes(), leaf.cert.read_bytes())],
        root_certificates=ca.cert.read_bytes() if require_client else None,
        require_client_auth=require_client,
    )
    srv = HealthServer(credentials)
    srv.set("", SERVING)
    return srv


def test_grpcs_with_a_private_ca_and_mtls_records_the_expiry(
    openssl_bin: str, tmp_path: Path
) -> None:
    ca = TestCA(openssl_bin, tmp_path)
    client = ca.issue("client", client=True)
    srv = _secure_server(ca, require_client=True)
    try:
        url = f"grpcs://127.0.0.1:{srv.port}"
        with_cert = TlsOptions(ca_file=str(ca.cert), cert_file=str(client.cert),
                               key_file=str(client.key))  # fmt: skip
        result = check(url, tls=with_cert)
        assert result.success, result
        left = result.details["cert_not_after"] - time.time()
        assert 2 * 86_400 < left <= 3 * 86_400 + 60  # the leaf's 3 days, not the CA's 30
        result = check(url, tls=with_cert, conditions=["[CERTIFICATE_EXPIRATION] > 7d"])
        assert result.status == "unhealthy"
        assert result.error_message == "[CERTIFICATE_EXPIRATION] > 7d: got 2d23h"

        # the server requires a client certificate: without one, no answer
        result = check(url, tls=TlsOptions(ca_file=str(ca.cert)))
        assert result.status == "unhealthy"
        assert result.details["error_type"] in ("tls", "unavailable", "connection_error"), result
    finally:
        srv.stop()


def test_grpcs_refuses_a_server_outside_the_trusted_ca(openssl_bin: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ca, other = (
        TestCA(openssl_bin, tmp_path / "a"),
        TestCA(openssl_bin, tmp_path / "b", name="other"),
    )
    srv = _secure_server(ca, require_client=False)
    try:
        result = check(f"grpcs://127.0.0.1:{srv.port}", tls=TlsOptions(ca_file=str(other.cert)))
        assert result.status == "unhealthy"
        assert result.details["error_type"] == "tls", result
        assert result.error_message == (
            "TLS certificate verification failed: unable to get local issuer certificate"
        )
    finally:
        srv.stop()


def test_the_tls_handshake_sees_what_ssl_sees(openssl_bin: str, tmp_path: Path) -> None:
    """The expiry read for grpcs is the chain's earliest notAfter, as ssl reports it."""
    ca = TestCA(openssl_bin, tmp_path)
    srv = _secure_server(ca, require_client=False)
    try:
        ctx = ssl.create_default_context(cafile=str(ca.cert))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
            ctx.set_alpn_protocols(["h2"])
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                expected = ssl.cert_time_to_seconds(tls.getpeercert()["notAfter"])
        result = check(f"grpcs://127.0.0.1:{srv.port}", tls=TlsOptions(ca_file=str(ca.cert)))
        assert result.details["cert_not_after"] == expected
    finally:
        srv.stop()
