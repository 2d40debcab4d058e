"""A stdlib HTTP server on 127.0.0.1 whose answer the test sets (status, body, headers), and
which remembers each request it got (method, path, headers, body)."""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass, field
from typing import Any, Self


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"status": "healthy"}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FlipServer:
    """``with FlipServer() as srv: srv.answer = Answer(503, b"...")``; ``srv.url("/x")``."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.routes: dict[str, Answer] = {}
        self.seen: list[Seen] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.seen.append(
                    Seen(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                ans = owner.routes.get(self.path.split("?")[0], owner.answer)
                self.send_response(ans.status)
                for k, v in ans.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(ans.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(ans.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_HEAD = _serve

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
