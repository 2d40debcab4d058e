"""Rotated TLS files are used by the next check: a CA file or a client certificate and key
renamed over the old ones (as cert-manager and ``certbot renew`` do) while the monitor runs,
against real TLS servers (HTTPS and gRPC) whose certificates the test re-issues."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from pathlib import Path

import grpc
import pytest

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.checks.grpc import GrpcChecker
from crackseg.utils.deployment.monitoring.checks.plan import build_plan
from crackseg.utils.deployment.monitoring.checks.tls import TlsOptions
from crackseg.utils.deployment.tlstrust import RESTAT_S, ContextCache, trust_context
from tests.support.grpc_health import SERVING, HealthServer
from tests.support.tls_ca import TestCA
from tests.support.tls_server import SwappableTlsServer, server_context
from tests.support.wait import wait_until

UNKNOWN_CA = "TLS certificate verification failed: unable to get local issuer certificate"


def rotate(path: Path, source: Path) -> None:
    """Replace ``path`` with ``source``'s bytes in one rename, as cert-manager does."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(source.read_bytes())
    os.replace(tmp, path)


def _cas(openssl_bin: str, tmp_path: Path, *names: str) -> list[TestCA]:
    made = []
    for name in names:
        (tmp_path / name).mkdir()
        made.append(TestCA(openssl_bin, tmp_path / name, name=name))
    return made


def _status(monitor: DeploymentHealthMonitor) -> tuple[str, str | None]:
    status = monitor.get_deployment_status("tls")
    return status["health_status"], status["last_error"]


def test_a_replaced_ca_file_is_trusted_by_the_next_check(openssl_bin: str, tmp_path: Path) -> None:
    old, new = _cas(openssl_bin, tmp_path, "old", "new")
    trust = tmp_path / "trust.pem"
    rotate(trust, old.cert)
    server = SwappableTlsServer(server_context(old, "first"))
    monitor = DeploymentHealthMonitor(failure_threshold=1)
    try:
        monitor.add_deployment_monitoring("tls", server.url, check_interval=0.2,
                                          tls=TlsOptions(ca_file=str(trust)))  # fmt: skip
        monitor.start_monitoring()
        wait_until(lambda: _status(monitor) == ("healthy", None), 20, "healthy on the old CA")

        # The server's certificate is re-issued by a new CA: the old trust refuses it ...
        server.use(server_context(new, "second"))
        wait_until(lambda: _status(monitor) == ("unhealthy", UNKNOWN_CA), 20, "refused")
        # ... until the CA file is rotated: the next checks trust the new CA
        rotated = time.monotonic()
        rotate(trust, new.cert)
        wait_until(lambda: _status(monitor)[0] == "healthy", 20, "healthy on the new CA")
        assert time.monotonic() - rotated < RESTAT_S + 5
    finally:
        monitor.close()
        server.stop()


def test_a_rotated_client_certificate_is_presented_by_the_next_check(
    openssl_bin: str, tmp_path: Path
) -> None:
    server_ca, old, new = _cas(openssl_bin, tmp_path, "server", "old", "new")
    old_client, new_client = old.issue("client", client=True), new.issue("client", client=True)
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    rotate(cert, old_client.cert)
    rotate(key, old_client.key)
    server = SwappableTlsServer(server_context(server_ca, "a", client_ca=old.cert))
    monitor = DeploymentHealthMonitor(failure_threshold=1)
    tls = TlsOptions(ca_file=str(server_ca.cert), cert_file=str(cert), key_file=str(key))
    try:
        monitor.add_deployment_monitoring("tls", server.url, check_interval=0.2, tls=tls)
        monitor.start_monitoring()
        wait_until(lambda: _status(monitor) == ("healthy", None), 20, "healthy with the old cert")

        # The server now wants certificates of the new client CA: the old one is refused ...
        server.use(server_context(server_ca, "b", client_ca=new.cert))
        wait_until(lambda: _status(monitor)[0] == "unhealthy", 20, "the old client cert refused")
        # ... until the certificate, then its key, are renamed in (between the two renames
        # the pair does not match: the last good context stays until it does)
        rotate(cert, new_client.cert)
        rotate(key, new_client.key)
        wait_until(lambda: _status(monitor) == ("healthy", None), 20, "healthy with the new cert")
    finally:
        monitor.close()
        server.stop()


def test_grpcs_makes_a_new_channel_when_the_ca_file_is_rotated(
    openssl_bin: str, tmp_path: Path
) -> None:
    old, new = _cas(openssl_bin, tmp_path, "old", "new")
    trust = tmp_path / "trust.pem"
    rotate(trust, old.cert)

    def serve(ca: TestCA, port: int = 0) -> HealthServer:
        leaf = ca.issue(f"grpc-{ca.cert.stem}")
        creds = grpc.ssl_server_credentials([(leaf.key.read_bytes(), leaf.cert.read_bytes())])
        srv = HealthServer(creds, port=port)
        srv.set("", SERVING)
        return srv

    srv = serve(old)
    plan = build_plan(url=f"grpcs://127.0.0.1:{srv.port}", type="grpc",
                      tls=TlsOptions(ca_file=str(trust)))  # fmt: skip
    checker = GrpcChecker()

    async def run() -> None:
        nonlocal srv
        try:
            assert (await checker.check(plan, 5.0)).success
            port = srv.port
            srv.stop()
            srv = serve(new, port)  # re-issued by a new CA, same address
            result = await checker.check(plan, 5.0)
            assert result.status == "unhealthy"
            assert result.details["error_type"] in ("tls", "unavailable"), result
            rotate(trust, new.cert)
            deadline = time.monotonic() + RESTAT_S + 10
            while not (result := await checker.check(plan, 5.0)).success:
                assert time.monotonic() < deadline, result
                await asyncio.sleep(0.1)
            assert checker.open_channels() == 1  # the old channel was closed, not kept
        finally:
            await checker.aclose()

    try:
        asyncio.run(run())
    finally:
        srv.stop()


def test_the_cache_looks_at_the_files_again_only_after_the_restat_interval(
    openssl_bin: str, tmp_path: Path
) -> None:
    old, new = _cas(openssl_bin, tmp_path, "old", "new")
    trust = tmp_path / "trust.pem"
    rotate(trust, old.cert)
    now = [0.0]
    cache = ContextCache(restat_s=2.0, clock=lambda: now[0])

    def get() -> ssl.SSLContext:
        return cache.get("k", (str(trust),), lambda: trust_context(str(trust)))

    first = get()
    rotate(trust, new.cert)
    now[0] = 1.0
    assert get() is first  # within the interval: not looked at
    now[0] = 2.5
    second = get()
    assert second is not first
    assert [c["subject"] for c in second.get_ca_certs()] == [
        ((("commonName", "crackseg test new"),),)
    ]
    now[0] = 5.0
    assert get() is second  # unchanged files: the same context (and connection pool)

    trust.write_text("not a PEM file")  # a broken rewrite keeps the last good context
    now[0] = 8.0
    assert get() is second
    with pytest.raises(Exception, match="ca_file"):
        ContextCache().get("other", (str(trust),), lambda: trust_context(str(trust)))
