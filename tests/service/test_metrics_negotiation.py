"""``/metrics`` answers in the format and encoding asked for (``Accept``, ``Accept-Encoding``),
as prometheus_client's own exposition does, and a real Prometheus scrapes both formats.

Prometheus always asks for OpenMetrics first (and gzip); to make it scrape the text format
too, one of its two targets is a small proxy that rewrites ``Accept`` to the text format.
Both proxies record what went through, so the test sees each format and encoding arrive.
"""

from __future__ import annotations

import gzip
import urllib.request
from collections.abc import Iterator

import pytest
import requests

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.httpd import Httpd, QuietHandler
from tests.support.monitor_servers import LiveServer
from tests.support.prometheus import StartPrometheus, query_series
from tests.support.wait import wait_until

OM_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Proxy:
    """Forwards GET /metrics to ``upstream``, with ``accept`` instead of the client's when set;
    keeps (client Accept, response Content-Type, Content-Encoding) per request."""

    def __init__(self, upstream: str, accept: str | None) -> None:
        self.seen: list[tuple[str, str, str]] = []
        proxy = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                asked = self.headers.get("Accept", "")
                headers = {"Accept": accept or asked}
                if self.headers.get("Accept-Encoding"):
                    headers["Accept-Encoding"] = self.headers["Accept-Encoding"]
                req = urllib.request.Request(upstream + self.path, headers=headers)
                with urllib.request.urlopen(req, timeout=5) as r:  # never decompresses
                    body, ctype, enc = (
                        r.read(),
                        r.headers["Content-Type"],
                        r.headers.get("Content-Encoding", ""),
                    )
                proxy.seen.append((asked, ctype, enc))
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                if enc:
                    self.send_header("Content-Encoding", enc)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = Httpd(Handler)
        self.address = self.httpd.address

    def close(self) -> None:
        self.httpd.close()


@pytest.fixture
def served() -> Iterator[WebServer]:
    with LiveServer() as target:
        target.set("/ok", status=200, body='{"status": "healthy"}')
        target.set("/down", status=500, body='{"status": "unhealthy"}')
        monitor = DeploymentHealthMonitor(failure_threshold=1)
        try:
            monitor.add_deployment_monitoring("web", target.url("/ok"), check_interval=0.25)
            monitor.add_deployment_monitoring("db", target.url("/down"), check_interval=0.25)
            monitor.start_monitoring()
            assert monitor.wait_for_checks("web") and monitor.wait_for_checks("db")
            with WebServer(monitor) as server:
                yield server
        finally:
            monitor.close()


def _raw(url: str, **headers: str) -> tuple[bytes, dict[str, str]]:
    req = urllib.request.Request(url + "/metrics", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read(), dict(r.headers)


def test_the_format_and_gzip_follow_the_request_headers(served: WebServer) -> None:
    om = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    body, headers = _raw(served.url, Accept=om, **{"Accept-Encoding": "gzip"})
    assert headers["Content-Type"].startswith(OM_TYPE) and headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body)
    assert text.endswith(b"# EOF\n") and b"# TYPE crackseg_deployment_checks counter\n" in text
    assert len(body) * 3 < len(text)

    body, headers = _raw(served.url, Accept="text/plain;version=0.0.4")
    assert headers["Content-Type"] == TEXT_TYPE and "Content-Encoding" not in headers
    assert b"# EOF" not in body and b"# TYPE crackseg_deployment_checks_total counter\n" in body
    # No Accept at all: the text format, as prometheus_client answers it.
    body, headers = _raw(served.url, **{"Accept-Encoding": "br, gzip;q=0.5"})
    assert headers["Content-Type"] == TEXT_TYPE and headers["Content-Encoding"] == "gzip"
    assert b"# TYPE crackseg_monitor_up gauge\n" in gzip.decompress(body)
    assert "Accept" in requests.get(served.url + "/metrics", timeout=5).headers["Vary"]


def test_prometheus_scrapes_both_formats(served: WebServer, prometheus: StartPrometheus) -> None:
    direct = _Proxy(served.url, None)
    as_text = _Proxy(served.url, "text/plain;version=0.0.4")
    try:
        base = prometheus([direct.address, as_text.address], job="both")

        def query(promql: str) -> dict[tuple[str, str], float]:
            return {
                (labels["instance"], labels.get("deployment_id", "")): value
                for labels, value in query_series(base, promql)
            }

        targets = {direct.address, as_text.address}
        for promql, expect in (
            ('probe_success{deployment_id="web"}', 1.0),
            ('probe_success{deployment_id="db"}', 0.0),
            ("crackseg_monitored_deployments", 2.0),
        ):
            got = wait_until(lambda q=promql: len(v := query(q)) == 2 and v, 30, promql)
            assert {k[0] for k in got} == targets and set(got.values()) == {expect}, promql
        # The histogram (its _created inline in OpenMetrics) and the summary read back whole.
        for promql in (
            'crackseg_probe_response_time_seconds_bucket{deployment_id="web", le="+Inf"}',
            "crackseg_engine_lateness_seconds_count",
        ):
            got = wait_until(lambda q=promql: len(v := query(q)) == 2 and v, 30, promql)
            assert all(v >= 1 for v in got.values()), (promql, got)
    finally:
        direct.close()
        as_text.close()
    asked, ctype, enc = direct.seen[-1]
    assert "application/openmetrics-text" in asked and ctype.startswith(OM_TYPE) and enc == "gzip"
    asked, ctype, enc = as_text.seen[-1]
    assert ctype == TEXT_TYPE and enc == "gzip"
