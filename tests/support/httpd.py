"""The one way tests run a stdlib HTTP server: 127.0.0.1, a free port, a daemon thread,
closed (shut down, socket closed, thread joined) on exit, optionally behind TLS."""

from __future__ import annotations

import contextlib
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the test output clean (no line per request)."""

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up on purpose (a test's timeout) is not a server error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Httpd:
    """``handler`` served in a background thread until :meth:`close`; ``tls`` wraps the
    listening socket (a server-side context)."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.server = _Server(("127.0.0.1", 0), handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/health", scheme: str = "http") -> str:
        return f"{scheme}://{self.address}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@contextlib.contextmanager
def serving(
    handler: type[BaseHTTPRequestHandler], *, tls: ssl.SSLContext | None = None
) -> Iterator[Httpd]:
    """``with serving(Handler) as httpd: ... httpd.url("/x")``."""
    httpd = Httpd(handler, tls=tls)
    try:
        yield httpd
    finally:
        httpd.close()
