"""An HTTPS health endpoint on 127.0.0.1 whose certificate and client-certificate policy the
test swaps while it runs (a re-issued certificate, a new client CA), answering every request
on a new connection, so each check shakes hands with what the server holds now."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from tests.support.tls_ca import TestCA


def server_context(ca: TestCA, name: str, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server context with a certificate ``ca`` issues for 127.0.0.1; with ``client_ca``
    it requires a client certificate that CA signed."""
    leaf = ca.issue(name)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"status": "healthy"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")  # no keep-alive: every check shakes hands
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    context: ssl.SSLContext

    def get_request(self) -> tuple[socket.socket, Any]:
        raw, addr = self.socket.accept()
        raw.settimeout(5.0)
        try:
            # The context of this moment: swapped by SwappableTlsServer.use().
            return self.context.wrap_socket(raw, server_side=True), addr
        except BaseException:
            raw.close()
            raise


class SwappableTlsServer:
    """``SwappableTlsServer(ctx)``: serves ``{"status": "healthy"}`` at :attr:`url` over
    TLS with ``ctx``; :meth:`use` swaps the context for the next connections."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.context = ctx
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}/health"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def use(self, ctx: ssl.SSLContext) -> None:
        self._server.context = ctx

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
