"""The hostile cases every HTTP check path must answer alike: what each path of the hostile
server (tests/support/hostile.py) gives, and the plain and TLS servers that serve them."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.models import HealthCheckResult
from tests.support.hostile import HostileServer
from tests.support.servers import self_signed_cert

LINE = "invalid HTTP response: response header line longer than 8190 bytes"
COUNT = "invalid HTTP response: more than 100 response headers"
TOTAL = "invalid HTTP response: response headers longer than 65536 bytes in total"
TIMEOUT = 2.0
DIFF_TIMEOUT = 1.0  # the differential's: three cases run into it on purpose

#: path -> (status, error_message or None, body_truncated)
CASES: dict[str, tuple[str, str | None, bool]] = {
    "/health": ("healthy", None, False),
    "/endless-headers": ("unhealthy", COUNT, False),
    "/endless-line": ("unhealthy", LINE, False),
    "/endless-status": ("unhealthy", LINE, False),
    "/huge-line": ("unhealthy", LINE, False),
    "/many-headers": ("unhealthy", COUNT, False),
    "/split-headers": ("unhealthy", COUNT, False),
    "/interim-then-many": ("unhealthy", COUNT, False),
    "/big-head": ("unhealthy", TOTAL, False),
    "/limit-ok": ("healthy", None, False),
    "/drip-headers": ("unhealthy", "timeout after 1s", False),
    "/gzip-degraded": ("degraded", "service reports degraded (HTTP 200)", False),
    "/deflate-degraded": ("degraded", "service reports degraded (HTTP 200)", False),
    "/raw-deflate-unhealthy": ("unhealthy", "service reports unhealthy (HTTP 200)", False),
    "/gzip-bomb": ("healthy", None, True),
    "/bad-gzip": (
        "unhealthy",
        "invalid HTTP response: gzip body cannot be decoded: "
        "Error -3 while decompressing data: incorrect header check",
        False,
    ),
    "/garbage": ("unhealthy", "invalid HTTP response: ", False),
    "/close": ("unhealthy", "connection closed by server without a response", False),
    "/close-delimited": ("degraded", "service reports degraded (HTTP 200)", False),
    "/partial": ("unhealthy", "invalid HTTP response: connection closed mid-response", False),
    "/interim": ("degraded", "service reports degraded (HTTP 503)", False),
    "/hang": ("unhealthy", "timeout after 1s", False),
    "/trickle": ("unhealthy", "timeout after 1s", False),
    "/huge": ("healthy", None, True),
    "/chunked-degraded": ("degraded", "service reports degraded (HTTP 200)", False),
    "/fail": ("unhealthy", "HTTP 500", False),
    "/degraded503": ("degraded", "service reports degraded (HTTP 503)", False),
    "/redirect-loop": (
        "unhealthy",
        "HTTP 302 redirect to /redirect-loop (redirects not followed)",
        False,
    ),
    "/redirect?to=http://127.0.0.1:9/login?token=S3CRET&next=/": (
        "unhealthy",
        "HTTP 302 redirect to http://127.0.0.1:9/login?token=***&next=%2F (redirects not followed)",
        False,
    ),
    "/redirect?to=/login?sig=S3CRET": (
        "unhealthy",
        "HTTP 302 redirect to /login?sig=*** (redirects not followed)",
        False,
    ),
}


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory, openssl_bin: str) -> ssl.SSLContext:
    cert, key = self_signed_cert(Path(tmp_path_factory.mktemp("tls")), openssl_bin)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture(scope="module")
def servers(tls_context: ssl.SSLContext) -> Iterator[dict[str, HostileServer]]:
    with HostileServer() as plain, HostileServer(tls_context) as tls:
        yield {"http": plain, "https": tls}


def shape(r: HealthCheckResult) -> tuple[Any, ...]:
    return (
        r.status,
        r.error_message,
        r.details.get("error_type"),
        r.details.get("http_status"),
        r.details.get("body_truncated", False),
    )
