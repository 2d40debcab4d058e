"""Stand-in instances for counter tests: stdlib HTTP servers on 127.0.0.1 whose ``/metrics``
answers whatever text the test sets (a request counter by status code and a latency
histogram, :func:`metrics_text`), so a test decides the counts exactly.

Usage::

    with metrics_standins(2) as (stable, canary):
        stable.text = metrics_text(980, 20)     # 1000 requests so far, 20 failed
        url = f"http://{stable.address}/metrics"
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MetricsStandIn", "metrics_standins", "metrics_text"]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.text.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class MetricsStandIn(ThreadingHTTPServer):
    """One stand-in instance; set :attr:`text` to change what its ``/metrics`` says."""

    text: str = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_port}"


def metrics_text(ok: int, failed: int) -> str:
    """Counters of ``ok`` + ``failed`` requests on route ``/predict`` (``failed`` with code
    500): half of them within 10 ms, 95 % within 100 ms, all within 1 s."""
    n = ok + failed
    return (
        "# TYPE http_requests_total counter\n"
        f'http_requests_total{{route="/predict",code="200"}} {ok}\n'
        f'http_requests_total{{route="/predict",code="500"}} {failed}\n'
        "# TYPE http_request_duration_seconds histogram\n"
        f'http_request_duration_seconds_bucket{{route="/predict",le="0.01"}} {n // 2}\n'
        f'http_request_duration_seconds_bucket{{route="/predict",le="0.1"}} {n * 95 // 100}\n'
        f'http_request_duration_seconds_bucket{{route="/predict",le="1.0"}} {n}\n'
        f'http_request_duration_seconds_bucket{{route="/predict",le="+Inf"}} {n}\n'
        f'http_request_duration_seconds_count{{route="/predict"}} {n}\n'
        f'http_request_duration_seconds_sum{{route="/predict"}} {n * 0.02}\n'
    )


@contextlib.contextmanager
def metrics_standins(n: int) -> Iterator[list[MetricsStandIn]]:
    """``n`` started stand-ins on free ports, each at :func:`metrics_text` (0, 0); stopped
    on exit."""
    servers = [MetricsStandIn(("127.0.0.1", 0), _Handler) for _ in range(n)]
    threads = []
    for s in servers:
        s.text = metrics_text(0, 0)
        t = threading.Thread(target=s.serve_forever, daemon=True)
        t.start()
        threads.append(t)
    try:
        yield servers
    finally:
        for s, t in zip(servers, threads, strict=True):
            s.shutdown()
            s.server_close()
            t.join(timeout=5.0)
