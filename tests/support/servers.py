"""Real HTTP servers on 127.0.0.1 for health-check tests (reusable by every area).

Each server runs its own asyncio loop in a daemon thread, so sync tests, async tests
and code under test on any loop can all reach it. Start with ``with HealthServer() as
srv:`` (or the fixtures below) and build URLs with ``srv.url("/health")``.

Routes of :class:`HealthServer`:
  /health          200 {"status": "healthy"}
  /degraded        200 {"status": "degraded"}       /unhealthy  200 {"status": "unhealthy"}
  /degraded503     503 {"status": "degraded"}       /fail       500 text
  /slow?delay=s    healthy after ``s`` seconds      /hang       never answers
  /trickle         headers, then one body byte every 0.1 s, forever
  /redirect        301 -> /health                   /redirect-loop  302 -> itself
  /redirect-chain/{n}  n hops of 302, then /health  /huge  10 MB body (Content-Length)
  /chunked         chunked {"status": "degraded"}   /echo-headers  request headers as JSON
  /ready-after/{key}/{n}  503 unhealthy for the first n hits of key, then healthy
  anything else (e.g. /notfound)  404
:class:`RawServer` speaks raw TCP: ``garbage``, ``close`` (accept and close),
``close-delimited`` (200 body ended by close), ``stale`` (answers the first request
of each connection with keep-alive, then closes on the next without answering),
``partial`` (closes mid-body) or ``interim`` (100 Continue, then 503 degraded).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest
from aiohttp import web

from tests.support.wait import free_port as free_port  # re-exported for the tests that use it here

_T = TypeVar("_T")
HUGE_BYTES = 10 * 1024 * 1024


class _LoopThread:
    """An event loop running in a daemon thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 10.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def self_signed_cert(directory: Path, openssl: str = "openssl") -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1/localhost with openssl; (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class HealthServer:
    """An aiohttp app with the routes in the module docstring, on 127.0.0.1:0.

    ``connections`` holds the client (host, port) of every connection that sent a
    request; ``hits`` counts requests per path; ``last_headers`` are the latest request's.
    """

    def __init__(
        self, *, keepalive_timeout: float = 75.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.keepalive_timeout = keepalive_timeout
        self.ssl_context = ssl_context
        self.connections: set[tuple[str, int]] = set()
        self.hits: Counter[str] = Counter()
        self.last_headers: dict[str, str] = {}
        self.port = 0
        self._lt: _LoopThread | None = None
        self._runner: web.AppRunner | None = None
        self._shutdown: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def __enter__(self) -> Self:
        self._lt = _LoopThread("test-health-server")
        self._lt.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._lt is not None:
            self._lt.run(self._stop(), timeout=20)
            self._lt.stop()
            self._lt = None

    async def _start(self) -> None:
        self._shutdown = asyncio.Event()
        app = web.Application(middlewares=[self._track])
        r = app.router
        r.add_get("/health", _const(lambda: _json(200, "healthy")))
        r.add_get("/degraded", _const(lambda: _json(200, "degraded")))
        r.add_get("/unhealthy", _const(lambda: _json(200, "unhealthy")))
        r.add_get("/degraded503", _const(lambda: _json(503, "degraded")))
        r.add_get("/fail", _const(lambda: _text(500, "internal error")))
        r.add_get("/slow", self._slow)
        r.add_get("/hang", self._hang)
        r.add_get("/trickle", self._trickle)
        r.add_get("/redirect", _const(lambda: _redirect(301, "/health")))
        r.add_get("/redirect-loop", _const(lambda: _redirect(302, "/redirect-loop")))
        r.add_get("/redirect-chain/{n}", self._chain)
        r.add_get("/huge", self._huge)
        r.add_get("/chunked", self._chunked)
        r.add_get("/echo-headers", self._echo)
        r.add_get("/ready-after/{key}/{n}", self._ready_after)
        self._runner = web.AppRunner(
            app, keepalive_timeout=self.keepalive_timeout, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        assert self._shutdown is not None and self._runner is not None
        self._shutdown.set()
        await self._runner.cleanup()

    @web.middleware
    async def _track(self, request: web.Request, handler: Any) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.connections.add((peer[0], peer[1]))
        self.hits[request.path] += 1
        self.last_headers = dict(request.headers)
        response: web.StreamResponse = await handler(request)
        return response

    async def _echo(self, request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "1")))
        return _json(200, "healthy")

    async def _hang(self, request: web.Request) -> web.Response:
        assert self._shutdown is not None
        await self._shutdown.wait()
        return _text(503, "shutting down")

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = 1_000_000
        await resp.prepare(request)
        assert self._shutdown is not None
        try:
            while not self._shutdown.is_set():
                await resp.write(b" ")
                await asyncio.sleep(0.1)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def _chain(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return _redirect(302, f"/redirect-chain/{n - 1}" if n > 0 else "/health")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = HUGE_BYTES
        await resp.prepare(request)
        chunk = b'{"status": "healthy", "pad": "' + b"x" * (64 * 1024 - 30)
        sent = 0
        try:
            while sent < HUGE_BYTES:
                part = chunk[: HUGE_BYTES - sent]
                await resp.write(part)
                sent += len(part)
                chunk = b"x" * len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client read its bound and left, as it should
        return resp

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"sta', b'tus": "deg', b'raded"}'):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def _ready_after(self, request: web.Request) -> web.Response:
        # hits are counted per path, so each key has its own counter
        if self.hits[request.path] <= int(request.match_info["n"]):
            return _json(503, "unhealthy")
        return _json(200, "healthy")


class RawServer:
    """A raw TCP server misbehaving in one of the modes in the module docstring."""

    MODES = ("garbage", "close", "close-delimited", "stale", "partial", "interim")

    def __init__(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}")
        self.mode = mode
        self.connections = 0
        self.requests = 0
        self.port = 0
        self._lt: _LoopThread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Self:
        self._lt = _LoopThread(f"test-raw-{self.mode}")
        self._server = self._lt.run(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lt is not None and self._server is not None:
            server = self._server

            async def stop() -> None:
                server.close()
                for w in list(self._writers):
                    w.close()
                await server.wait_closed()

            self._lt.run(stop())
            self._lt.stop()
            self._lt = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            if self.mode == "close":
                return
            served = 0
            while True:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                self.requests += 1
                if self.mode == "garbage":
                    writer.write(b"SSH-2.0-OpenSSH_9.2 this is not http\r\n\r\n")
                elif self.mode == "close-delimited":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b'Connection: close\r\n\r\n{"status": "degraded"}'
                    )
                elif self.mode == "partial":  # promises 100 bytes, sends 9, closes
                    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"status"')
                elif self.mode == "interim":  # 100 Continue, then the real answer
                    writer.write(
                        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n"
                        b'Content-Length: 22\r\n\r\n{"status": "degraded"}'
                    )
                    await writer.drain()
                    continue
                elif served == 0:  # stale: first request answered, keep-alive
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b'Content-Length: 21\r\n\r\n{"status": "healthy"}'
                    )
                    served += 1
                    await writer.drain()
                    continue
                await writer.drain()
                return
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


def _const(make: Callable[[], web.Response]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return make()

    return handler


def _json(status: int, health: str) -> web.Response:
    return web.Response(
        status=status, body=json.dumps({"status": health}), content_type="application/json"
    )


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


def _redirect(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


@pytest.fixture(scope="module")
def health_server() -> Iterator[HealthServer]:
    with HealthServer() as srv:
        yield srv


@pytest.fixture()
def raw_server_factory() -> Iterator[Any]:
    started: list[RawServer] = []

    def start(mode: str) -> RawServer:
        srv = RawServer(mode).__enter__()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.__exit__(None, None, None)
