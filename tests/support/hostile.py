"""Hostile HTTP servers on 127.0.0.1, plain or TLS, written for the check tests.

:class:`HostileServer` answers by path (see :data:`ROUTES`), the same bytes over
``http://`` and ``https://``, so one case can run against both client paths.
:class:`IdleDropServer` forgets a keep-alive connection once it was idle longer than
``idle_s``, as a firewall or NAT does: the next request on it is swallowed (``drop``)
or answered with a TCP reset (``reset``).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Self
from urllib.parse import unquote

from tests.support.servers import _LoopThread

_JSON = b"Content-Type: application/json\r\n"


def _response(status: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\n".encode()
        + _JSON
        + extra
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _status(value: str) -> bytes:
    return json.dumps({"status": value}).encode()


def _gone(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
    # A TLS transport does not say is_closing() when the peer went; the reader knows.
    return w.transport.is_closing() or r.at_eof() or r.exception() is not None


async def _endless(
    r: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes, chunk: bytes
) -> None:
    """``first``, then ``chunk`` forever (until the client gives up)."""
    writer.write(first)
    while not _gone(r, writer):
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0)  # drain() does not yield unless paused


async def _drip(r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    while not _gone(r, writer):
        writer.write(b"a")
        await writer.drain()
        await asyncio.sleep(0.05)


async def _split_headers(r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """150 headers in two reads, each small enough to look harmless on its own."""
    writer.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-A%d: v\r\n" % i for i in range(75)))
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(b"".join(b"X-B%d: v\r\n" % i for i in range(75)) + b"Content-Length: 0\r\n\r\n")
    await writer.drain()
    await r.read()  # until the client hangs up


async def _close(r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    return  # reads the request, closes without a byte


async def _close_delimited(r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\n" + _JSON + b"Connection: close\r\n\r\n" + _status("degraded")
    )
    await writer.drain()
    writer.close()


async def _partial(r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"status"')
    await writer.drain()
    writer.close()


async def _hang(r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await r.read()  # never answers; returns when the client hangs up


async def _trickle(r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    while not _gone(r, writer):
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.1)


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


async def _interim_then_many(r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(ROUTES["/many-headers"])
    await writer.drain()
    await r.read()


#: path -> what the server sends. Bytes are sent and the connection kept; a coroutine
#: function streams until the client closes.
ROUTES: dict[
    str, Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] | bytes
] = {
    "/health": _response("200 OK", _status("healthy")),
    # never ends its headers: many small lines, or one line that never ends
    "/endless-headers": lambda r, w: _endless(
        r, w, b"HTTP/1.1 200 OK\r\n", b"X-Pad: " + b"a" * 40 + b"\r\n"
    ),
    "/endless-line": lambda r, w: _endless(r, w, b"HTTP/1.1 200 OK\r\nX-Pad: ", b"a" * 4096),
    "/endless-status": lambda r, w: _endless(r, w, b"HTTP/1.1 200 ", b"O" * 4096),
    "/drip-headers": _drip,
    "/split-headers": _split_headers,
    "/huge-line": _response("200 OK", _status("healthy"), b"X-Big: " + b"a" * 1_000_000 + b"\r\n"),
    "/many-headers": _response(
        "200 OK", _status("healthy"), b"".join(b"X-H%d: v\r\n" % i for i in range(1000))
    ),
    "/big-head": _response(
        "200 OK",
        _status("healthy"),
        b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(90)),
    ),
    "/limit-ok": _response(
        "200 OK",
        _status("healthy"),
        b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 8000) for i in range(7)),
    ),
    "/gzip-degraded": _response(
        "200 OK", gzip.compress(_status("degraded")), b"Content-Encoding: gzip\r\n"
    ),
    "/deflate-degraded": _response(
        "200 OK", zlib.compress(_status("degraded")), b"Content-Encoding: deflate\r\n"
    ),
    "/raw-deflate-unhealthy": _response(
        "200 OK",
        (lambda c: c.compress(_status("unhealthy")) + c.flush())(zlib.compressobj(wbits=-15)),
        b"Content-Encoding: deflate\r\n",
    ),
    "/gzip-bomb": _response(
        "200 OK", gzip.compress(b"{" + b" " * 50_000_000 + b"}"), b"Content-Encoding: gzip\r\n"
    ),
    "/bad-gzip": _response("200 OK", b"this is not gzip", b"Content-Encoding: gzip\r\n"),
    "/garbage": b"SSH-2.0-OpenSSH_9.2 this is not http\r\n\r\n",
    # the cases of tests/support/servers.py, here over both schemes
    "/close": _close,
    "/close-delimited": _close_delimited,
    "/partial": _partial,
    "/interim": b"HTTP/1.1 100 Continue\r\n\r\n"
    + _response("503 Service Unavailable", _status("degraded")),
    "/hang": _hang,
    "/interim-then-many": _interim_then_many,
    "/trickle": _trickle,
    "/huge": _response("200 OK", b" " * (10 * 1024 * 1024)),
    "/chunked-degraded": b"HTTP/1.1 200 OK\r\n"
    + _JSON
    + b"Transfer-Encoding: chunked\r\n\r\n"
    + _chunked(_status("degraded")),
    "/fail": _response("500 Internal Server Error", b"internal error"),
    "/degraded503": _response("503 Service Unavailable", _status("degraded")),
    "/redirect-loop": b"HTTP/1.1 302 Found\r\nLocation: /redirect-loop\r\nContent-Length: 0\r\n\r\n",
}


async def _new_event() -> asyncio.Event:
    return asyncio.Event()


class _Base:
    """A TCP (or TLS) server in its own loop thread; subclasses implement ``_serve``."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.port = 0
        self.connections = 0
        self.requests = 0
        self.last_request = b""
        self._lt: _LoopThread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open_connections(self) -> int:
        """Connections the server still holds open (closed ones leave at once)."""
        return len(self._writers)

    def url(self, path: str = "/health") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Self:
        self._lt = _LoopThread(f"test-{type(self).__name__}")
        self._stopping = self._lt.run(_new_event())
        self._server = self._lt.run(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_context, backlog=512)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lt is not None and self._server is not None:
            server = self._server

            async def stop() -> None:
                assert self._stopping is not None
                self._stopping.set()
                server.close()
                for w in list(self._writers):
                    w.transport.abort()
                if self._tasks:
                    await asyncio.wait(list(self._tasks), timeout=5)
                await asyncio.wait_for(server.wait_closed(), 5)

            self._lt.run(stop())
            self._lt.stop()
            self._lt = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ssl.SSLError:
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.transport.abort()

    async def _read_request(self, reader: asyncio.StreamReader) -> str:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        self.last_request = head
        return head.split(b" ", 2)[1].decode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class HostileServer(_Base):
    """Answers each path of :data:`ROUTES`; ``/redirect?to=URL`` answers 302 to URL."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            path = await self._read_request(reader)
            if path.startswith("/redirect?to="):
                location = unquote(path.split("=", 1)[1]).encode()
                writer.write(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n"
                             b"Content-Length: 0\r\n\r\n")  # fmt: skip
                await writer.drain()
                continue
            route = ROUTES.get(path)
            if route is None:
                writer.write(_response("404 Not Found", b"{}"))
            elif isinstance(route, bytes):
                writer.write(route)
            else:
                await route(reader, writer)
                return
            await writer.drain()


class IdleDropServer(_Base):
    """Healthy keep-alive answers; a connection idle past ``idle_s`` is forgotten."""

    def __init__(self, mode: str, idle_s: float, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context)
        if mode not in ("drop", "reset"):
            raise ValueError("mode must be 'drop' or 'reset'")
        self.mode = mode
        self.idle_s = idle_s
        self.forgotten = 0  # requests that met a forgotten connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        last = time.monotonic()
        while True:
            await self._read_request(reader)
            if time.monotonic() - last > self.idle_s:
                self.forgotten += 1
                if self.mode == "reset":
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    return  # abort() in _handle: an RST on the wire
                assert self._stopping is not None
                await self._stopping.wait()  # a black hole: never answers, never closes
            writer.write(_response("200 OK", _status("healthy")))
            await writer.drain()
            last = time.monotonic()
