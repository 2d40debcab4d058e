"""DefaultHealthChecker: how real answers and real failures become results."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from tests.support.servers import (  # noqa: F401  (fixtures)
    HealthServer,
    RawServer,
    free_port,
    health_server,
    raw_server_factory,
    self_signed_cert,
)


@pytest.fixture(scope="module")
def checker() -> Iterator[DefaultHealthChecker]:
    c = DefaultHealthChecker()
    yield c
    c.close()


@pytest.mark.parametrize(
    ("path", "status", "success", "http_status", "message"),
    [
        ("/health", "healthy", True, 200, None),
        ("/degraded", "degraded", False, 200, "service reports degraded (HTTP 200)"),
        ("/unhealthy", "unhealthy", False, 200, "service reports unhealthy (HTTP 200)"),
        ("/degraded503", "degraded", False, 503, "service reports degraded (HTTP 503)"),
        ("/fail", "unhealthy", False, 500, "HTTP 500"),
        ("/notfound", "unhealthy", False, 404, "HTTP 404"),
        ("/chunked", "degraded", False, 200, "service reports degraded (HTTP 200)"),
    ],
)
def test_answers_are_classified(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
    path: str,
    status: str,
    success: bool,
    http_status: int,
    message: str | None,
) -> None:
    result = checker.check_health(health_server.url(path), timeout=10)
    assert (result.status, result.success) == (status, success)
    assert result.details["http_status"] == http_status
    assert result.error_message == message
    assert 0 < result.response_time_ms < 5000


def test_body_status_is_reported(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    assert checker.check_health(health_server.url("/degraded503")).details["body_status"] == (
        "degraded"
    )


def test_huge_body_is_read_only_up_to_the_bound(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    start = time.monotonic()
    result = checker.check_health(health_server.url("/huge"), timeout=10)
    assert result.status == "healthy"  # classified by status code; truncated JSON is ignored
    assert result.details["body_truncated"] is True
    assert time.monotonic() - start < 5
    # The connection was dropped rather than drained; the next check still works.
    assert checker.check_health(health_server.url("/health")).success


def test_small_body_bound_truncates(health_server: HealthServer) -> None:  # noqa: F811
    c = DefaultHealthChecker(max_body_bytes=8)
    try:
        result = c.check_health(health_server.url("/degraded"))
        assert result.status == "healthy"  # the body was cut before "status" could be read
        assert result.details["body_truncated"] is True
    finally:
        c.close()


def test_redirect_is_reported_not_followed_by_default(
    checker: DefaultHealthChecker,
    health_server: HealthServer,  # noqa: F811
) -> None:
    result = checker.check_health(health_server.url("/redirect"))
    assert not result.success and result.status == "unhealthy"
    assert result.error_message == "HTTP 301 redirect to /health (redirects not followed)"
    assert result.details["http_status"] == 301
    assert result.details["location"] == "/health"


def test_redirects_followed_when_asked(health_server: HealthServer) -> None:  # noqa: F811
    c = DefaultHealthChecker(follow_redirects=True, max_redirects=5)
    try:
        ok = c.check_health(health_server.url("/redirect"))
        assert ok.success and ok.details["redirects"] == 1
        chain = c.check_health(health_server.url("/redirect-chain/3"))
        assert chain.success and chain.details["redirects"] == 4
        loop = c.check_health(health_server.url("/redirect-loop"), timeout=5)
        assert not loop.success and loop.error_message is not None
        assert loop.error_message.startswith("redirect loop")
        long = c.check_health(health_server.url("/redirect-chain/9"), timeout=5)
        assert long.error_message == "too many redirects (more than 5)"
    finally:
        c.close()


def test_refused_connection(checker: DefaultHealthChecker) -> None:
    result = checker.check_health(f"http://127.0.0.1:{free_port()}/health", timeout=5)
    assert (result.status, result.error_message) == ("unhealthy", "connection refused")
    assert result.details["error_type"] == "connection_refused"


def test_dns_failure_names_dns(checker: DefaultHealthChecker) -> None:
    result = checker.check_health("http://no-such-host.invalid/health", timeout=5)
    assert not result.success
    assert result.error_message is not None
    # a resolver that itself times out is reported as a timeout, which is honest too
    assert "DNS" in result.error_message or result.error_message == "timeout after 5s"


def test_garbage_is_an_invalid_response(
    checker: DefaultHealthChecker,
    raw_server_factory,  # noqa: F811
) -> None:
    srv = raw_server_factory("garbage")
    result = checker.check_health(srv.url(), timeout=5)
    assert not result.success
    assert result.error_message is not None
    assert result.error_message.startswith("invalid HTTP response")


def test_server_closing_at_once_is_unhealthy(
    checker: DefaultHealthChecker,
    raw_server_factory,  # noqa: F811
) -> None:
    srv = raw_server_factory("close")
    result = checker.check_health(srv.url(), timeout=5)
    assert not result.success
    assert result.error_message == "connection closed by server without a response"


def test_close_delimited_body_is_read(
    checker: DefaultHealthChecker,
    raw_server_factory,  # noqa: F811
) -> None:
    srv = raw_server_factory("close-delimited")
    result = checker.check_health(srv.url(), timeout=5)
    assert result.status == "degraded"
    assert result.details == {"http_status": 200, "body_status": "degraded"}


def test_response_cut_mid_body_is_invalid(
    checker: DefaultHealthChecker,
    raw_server_factory,  # noqa: F811
) -> None:
    srv = raw_server_factory("partial")
    result = checker.check_health(srv.url(), timeout=5)
    assert result.error_message == "invalid HTTP response: connection closed mid-response"


def test_interim_response_is_skipped(
    checker: DefaultHealthChecker,
    raw_server_factory,  # noqa: F811
) -> None:
    srv = raw_server_factory("interim")
    for _ in range(2):  # and the keep-alive connection stays in step
        result = checker.check_health(srv.url(), timeout=5)
        assert result.status == "degraded" and result.details["http_status"] == 503
    assert srv.connections == 1


def test_custom_headers_are_sent(health_server: HealthServer) -> None:  # noqa: F811
    c = DefaultHealthChecker(headers={"X-Probe": "crackseg"})
    try:
        url = health_server.url("/echo-headers").replace("127.0.0.1", "user:pw@127.0.0.1")
        result = c.check_health(url)
        assert result.success
        assert health_server.last_headers["X-Probe"] == "crackseg"
        assert health_server.last_headers["Authorization"] == "Basic dXNlcjpwdw=="
    finally:
        c.close()
    with pytest.raises(ConfigError):
        DefaultHealthChecker(headers={"X-Bad": "a\r\nInjected: 1"})


def test_invalid_url_and_bad_arguments(checker: DefaultHealthChecker) -> None:
    result = checker.check_health("ftp://example.org/health")
    assert not result.success and result.details["error_type"] == "invalid_url"
    with pytest.raises(ConfigError):
        checker.check_health("http://127.0.0.1/", timeout=0)
    with pytest.raises(ConfigError):
        DefaultHealthChecker(max_body_bytes=0)


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, openssl_bin: str
) -> Iterator[HealthServer]:
    cert, key = self_signed_cert(Path(tmp_path_factory.mktemp("tls")))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with HealthServer(ssl_context=ctx) as srv:
        yield srv


def test_tls_verification_failure_names_tls(
    checker: DefaultHealthChecker, tls_server: HealthServer
) -> None:
    result = checker.check_health(tls_server.url("/health"), timeout=10)
    assert not result.success
    assert result.error_message is not None and "TLS" in result.error_message
    assert result.details["error_type"] == "tls"


def test_https_without_verification(tls_server: HealthServer) -> None:
    c = DefaultHealthChecker(verify_tls=False)
    try:
        assert c.check_health(tls_server.url("/health"), timeout=10).success
        result = c.check_health(tls_server.url("/degraded503"), timeout=10)
        assert result.status == "degraded" and result.details["http_status"] == 503
        huge = c.check_health(tls_server.url("/huge"), timeout=10)
        assert huge.success and huge.details["body_truncated"] is True
        hang = c.check_health(tls_server.url("/hang"), timeout=1)
        assert hang.error_message == "timeout after 1s"
    finally:
        c.close()
