"""HTTP checks with conditions, on a stdlib server whose answers the test flips: each
placeholder read from a real answer, what the request sends, degraded_when, hostile bodies."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from crackseg.utils.deployment.monitoring.checks.plan import build_plan
from crackseg.utils.deployment.monitoring.checks.tls import TlsOptions
from tests.support.flip_server import Answer, FlipServer
from tests.support.httpd import Httpd, QuietHandler
from tests.support.tls_ca import TestCA


@pytest.fixture
def srv() -> Iterator[FlipServer]:
    with FlipServer() as s:
        yield s


@pytest.fixture
def checker() -> Iterator[DefaultHealthChecker]:
    c = DefaultHealthChecker()
    yield c
    c.close()


def run(
    checker: DefaultHealthChecker, url: str, timeout: float = 5.0, **fields: Any
) -> HealthCheckResult:
    return checker.check_plan(build_plan(url=url, **fields), timeout)


def test_status_flips(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    cond = {"conditions": ["[STATUS] == 200"]}
    assert run(checker, srv.url(), **cond).success
    srv.answer = Answer(503, b"{}")
    result = run(checker, srv.url(), **cond)
    assert (result.status, result.error_message) == ("unhealthy", "[STATUS] == 200: got 503")
    assert result.details["http_status"] == 503
    assert result.details["failed_condition"] == "[STATUS] == 200"


def test_a_body_path_flips_kserve_loading(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    """KServe answers 200 {"ready": false} while the model loads: not healthy."""
    cond = {"conditions": ["[STATUS] == 200", "[BODY].ready == true"]}
    srv.answer = Answer(200, b'{"name": "crackseg", "ready": false}')
    result = run(checker, srv.url(), **cond)
    assert (result.status, result.error_message) == ("unhealthy", "[BODY].ready == true: got false")
    srv.answer = Answer(200, b'{"name": "crackseg", "ready": true}')
    assert run(checker, srv.url(), **cond).success


def test_functions_on_a_real_body(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    cond = {"conditions": ["len([BODY].models) > 0", "[BODY].models[0] == pat(crack*)",
                           "[BODY].state == any(READY, WARM)"]}  # fmt: skip
    srv.answer = Answer(200, b'{"models": ["crackseg-v2"], "state": "WARM"}')
    assert run(checker, srv.url(), **cond).success
    srv.answer = Answer(200, b'{"models": [], "state": "WARM"}')
    assert run(checker, srv.url(), **cond).error_message == "len([BODY].models) > 0: got 0"
    srv.answer = Answer(200, b'{"models": ["x"], "state": "COLD"}')
    assert (
        run(checker, srv.url(), **cond).error_message == '[BODY].models[0] == pat(crack*): got "x"'
    )


def test_headers_placeholder(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    cond = {"conditions": ["[HEADERS].X-Model-Version == pat(2.*)"]}
    srv.answer = Answer(200, b"{}", {"X-Model-Version": "2.1.0"})
    assert run(checker, srv.url(), **cond).success
    srv.answer = Answer(200, b"{}", {"X-Model-Version": "1.9.0"})
    assert run(checker, srv.url(), **cond).error_message == (
        '[HEADERS].X-Model-Version == pat(2.*): got "1.9.0"'
    )


def test_response_time_is_the_measured_one(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    ok = run(checker, srv.url(), conditions=["[RESPONSE_TIME] < 5000"])
    assert ok.success
    result = run(checker, srv.url(), conditions=["[RESPONSE_TIME] < 0"])
    assert result.error_message == f"[RESPONSE_TIME] < 0: got {result.response_time_ms:.0f}"


def test_connected_and_a_server_that_is_down(checker: DefaultHealthChecker) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/health"
    result = run(checker, url, conditions=["[STATUS] == 200"])
    assert (result.status, result.error_message) == ("unhealthy", "connection refused")
    assert run(checker, url, conditions=["[CONNECTED] == false"]).success


def test_method_headers_and_json_body_are_sent(
    srv: FlipServer, checker: DefaultHealthChecker
) -> None:
    result = run(
        checker, srv.url("/v2/models/m/infer"), method="POST",
        headers={"Authorization": "Bearer tok-abcdefgh", "X-Probe": "1"},
        body={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0.5]}]},
        conditions=["[STATUS] == 200"],
    )  # fmt: skip
    assert result.success, result
    seen = srv.seen[-1]
    assert (seen.method, seen.path) == ("POST", "/v2/models/m/infer")
    assert seen.headers["authorization"] == "Bearer tok-abcdefgh"
    assert seen.headers["content-type"] == "application/json"
    assert json.loads(seen.body)["inputs"][0]["data"] == [0.5]


def test_head_and_put_with_a_text_body(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    started = time.monotonic()
    result = run(checker, srv.url(), method="HEAD", conditions=["[STATUS] == 200"])
    assert result.success, result
    assert time.monotonic() - started < 2.0  # no wait for a body a HEAD answer never has
    assert srv.seen[-1].method == "HEAD"
    assert run(checker, srv.url(), method="PUT", body="ping").success
    assert (srv.seen[-1].method, srv.seen[-1].body) == ("PUT", b"ping")


def test_degraded_when(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    fields = {"conditions": ["[STATUS] == 200"], "degraded_when": ["[BODY].queue > 100"]}
    srv.answer = Answer(200, b'{"queue": 500}')
    result = run(checker, srv.url(), **fields)
    assert (result.status, result.error_message) == ("degraded", "degraded: [BODY].queue > 100")
    srv.answer = Answer(200, b'{"queue": 5}')
    assert run(checker, srv.url(), **fields).status == "healthy"
    srv.answer = Answer(500, b'{"queue": 500}')  # conditions fail first: unhealthy
    assert run(checker, srv.url(), **fields).status == "unhealthy"


def test_the_default_judgement_reads_any_case(
    srv: FlipServer, checker: DefaultHealthChecker
) -> None:
    srv.answer = Answer(200, b'{"status": "Degraded"}')
    assert checker.check_health(srv.url(), timeout=5).status == "degraded"
    srv.answer = Answer(200, b'{"status": "Healthy"}')  # TorchServe's capital H
    assert checker.check_health(srv.url(), timeout=5).status == "healthy"


def test_a_condition_on_a_non_json_body(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    srv.answer = Answer(200, b"<html>ok</html>", {"Content-Type": "text/html"})
    result = run(checker, srv.url(), conditions=["[BODY].status == UP"])
    assert result.error_message == "[BODY].status == UP: got nothing (the body is not JSON)"
    assert run(checker, srv.url(), conditions=["[BODY] == pat(*ok*)"]).success


def test_a_64_kib_body_with_a_deep_path(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    doc: object = {"ready": True, "pad": "x" * 60_000}
    for _ in range(30):
        doc = {"a": doc}
    srv.answer = Answer(200, json.dumps(doc).encode())
    path = "[BODY]" + ".a" * 30 + ".ready == true"
    assert run(checker, srv.url(), conditions=[path]).success
    # past the checker's body bound the JSON is cut: a failure naming why, never a hang
    srv.answer = Answer(200, json.dumps({"pad": "x" * 70_000, "ready": True}).encode())
    started = time.monotonic()
    result = run(checker, srv.url(), conditions=["[BODY].ready == true"])
    assert result.error_message == "[BODY].ready == true: got nothing (the body is not JSON)"
    assert result.details["body_truncated"] is True
    assert time.monotonic() - started < 2.0


def test_a_value_seen_never_shows_a_secret(srv: FlipServer, checker: DefaultHealthChecker) -> None:
    """A server echoing the API key back: the failure text masks it."""
    srv.answer = Answer(200, b'{"echo": "Bearer tok-abcdefgh"}')
    result = run(checker, srv.url(), headers={"Authorization": "Bearer tok-abcdefgh"},
                 conditions=["[BODY].echo == nothing"])  # fmt: skip
    assert result.error_message is not None
    assert "tok-abcdefgh" not in result.error_message
    assert result.error_message == '[BODY].echo == nothing: got "***"'


def _https_server(
    ca: TestCA, days: int, require_client: bool = False, location: str | None = None
) -> tuple[Httpd, int]:
    leaf = ca.issue(f"https-{days}-{require_client}-{location is not None}", days=days)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ca.cert)

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b'{"status": "healthy"}'
            self.send_response(200 if location is None else 307)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = Httpd(Handler, tls=ctx)
    return httpd, httpd.port


def test_https_private_ca_mtls_verify_off_and_the_expiry(openssl_bin: str, tmp_path: Path,
                                                          checker: DefaultHealthChecker) -> None:  # fmt: skip
    ca = TestCA(openssl_bin, tmp_path)
    client = ca.issue("https-client", client=True)
    server, port = _https_server(ca, days=3, require_client=True)
    url = f"https://127.0.0.1:{port}/health"
    mtls = TlsOptions(ca_file=str(ca.cert), cert_file=str(client.cert), key_file=str(client.key))
    try:
        result = run(checker, url, tls=mtls)
        assert result.success, result
        left = result.details["cert_not_after"] - time.time()
        assert 2 * 86_400 < left <= 3 * 86_400 + 60
        result = run(checker, url, tls=mtls, conditions=["[CERTIFICATE_EXPIRATION] > 7d"])
        assert result.error_message == "[CERTIFICATE_EXPIRATION] > 7d: got 2d23h"
        # the server requires the client's certificate
        result = run(checker, url, tls=TlsOptions(ca_file=str(ca.cert)))
        assert result.status == "unhealthy"
        assert result.details["error_type"] in ("tls", "connection_closed", "connection_error")
    finally:
        server.close()
    server, port = _https_server(ca, days=3)
    try:
        url = f"https://127.0.0.1:{port}/health"
        unknown = checker.check_health(url, timeout=5)  # the system's trust: unknown CA
        assert unknown.error_message == (
            "TLS certificate verification failed: unable to get local issuer certificate"
        )
        assert "cert_not_after" not in unknown.details
        result = run(checker, url, tls=TlsOptions(verify=False))
        assert result.success, result
        assert 2 * 86_400 < result.details["cert_not_after"] - time.time() <= 3 * 86_400 + 60
    finally:
        server.close()


def test_degraded_when_alone_keeps_the_default_health(
    srv: FlipServer, checker: DefaultHealthChecker
) -> None:
    fields = {"degraded_when": ["[BODY].queue > 100"]}
    srv.answer = Answer(500, b'{"queue": 500}')
    assert run(checker, srv.url(), **fields).error_message == "HTTP 500"
    srv.answer = Answer(200, b'{"queue": 500, "version": "2.1"}')
    result = run(checker, srv.url(), **fields)
    assert (result.status, result.details["version"]) == ("degraded", "2.1")
    srv.answer = Answer(200, b'{"queue": 5}')
    assert run(checker, srv.url(), **fields).status == "healthy"


def test_a_redirect_to_another_origin_gets_neither_credentials_nor_body() -> None:
    checker = DefaultHealthChecker(follow_redirects=True)
    try:
        with FlipServer() as first, FlipServer() as other:
            first.answer = Answer(307, b"", {"Location": other.url("/elsewhere")})
            result = run(checker, first.url("/infer"), method="POST",
                         headers={"X-Api-Key": "k-1234567890"}, body={"api_key": "k-0987654321"},
                         conditions=["[STATUS] == 200"])  # fmt: skip
            assert result.success, result
            assert (first.seen[-1].method, first.seen[-1].body) == (
                "POST",
                b'{"api_key":"k-0987654321"}',
            )
            went = other.seen[-1]
            assert (went.method, went.path, went.body) == ("GET", "/elsewhere", b"")
            assert "x-api-key" not in went.headers
    finally:
        checker.close()


def test_the_private_ca_and_client_certificate_stay_with_their_origin(
    openssl_bin: str, tmp_path: Path
) -> None:
    """Redirected to another origin, the check no longer trusts the deployment's CA nor
    presents its client certificate: that origin's certificate (same CA) is refused."""
    ca = TestCA(openssl_bin, tmp_path)
    client = ca.issue("redirect-client", client=True)
    other, other_port = _https_server(ca, days=30)
    first, port = _https_server(ca, days=30,
                                location=f"https://127.0.0.1:{other_port}/health")  # fmt: skip
    checker = DefaultHealthChecker(follow_redirects=True)
    tls = TlsOptions(ca_file=str(ca.cert), cert_file=str(client.cert), key_file=str(client.key))
    try:
        direct = run(checker, f"https://127.0.0.1:{other_port}/health", tls=tls)
        assert direct.success, direct  # the other origin is fine when configured itself
        result = run(checker, f"https://127.0.0.1:{port}/health", tls=tls)
        assert result.error_message == (
            "TLS certificate verification failed: unable to get local issuer certificate"
        ), result
    finally:
        checker.close()
        first.close()
        other.close()
