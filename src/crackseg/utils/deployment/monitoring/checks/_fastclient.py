"""A lean HTTP/1.1 GET client for health checks over plain ``http://``.

Why it exists: aiohttp's request/response machinery costs ~0.16-0.21 ms of CPU per
check, which caps a core at ~5,000 checks/s. A health check needs far less: send one
GET, parse the status line and a few headers with httptools (llhttp, as uvicorn uses),
read a bounded body and keep the connection for the next check.

Contract of :class:`FastClient` (one instance per event loop, used only from it):

* ``get()`` completes within the deadline given in ``loop.time()`` terms, covering the
  wait for a pool slot, connect, send, headers and body; past it, ``TimeoutError``.
* At most ``pool_size_per_host`` connections per (host, port); extra requests wait for
  a free one (the wait counts against their deadline). Idle connections are kept and
  reused; one the server closes while idle is dropped at once.
* A reused connection that closes before any byte of the response arrives (the server
  timed it out as we wrote) is retried once on a new connection: GET is idempotent.
* Bodies delimited by Content-Length, chunked encoding or connection close are read up
  to ``max_body`` bytes; past that the rest is not read and the connection is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlsplit

import httptools

USER_AGENT = "crackseg-health/0.1"
_SAFE = "/%:@!$&'()*+,;=-._~"
_IDLE_MAX_S = 60.0  # idle longer than this and a middlebox may have dropped it silently


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed check URL; ``request`` is the complete GET for the fast path."""

    url: str
    https: bool
    host: str
    port: int
    request: bytes


def parse_target(url: str, headers: dict[str, str]) -> Target | str:
    """Parse ``url`` and build its request; a str is the message for an unusable URL.

    Sends ``Host``, a ``User-Agent`` and ``Accept`` unless ``headers`` sets them, Basic
    auth for ``user:password@`` in the URL, then ``headers``. No Accept-Encoding: the
    body stays plain. Header values are assumed free of CR/LF (the caller checks).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"invalid URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "invalid URL: expected http://host[:port]/path or https://..."
    https = parts.scheme == "https"
    host = parts.hostname
    default_port = 443 if https else 80
    port = port or default_port
    path = quote(parts.path or "/", safe=_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_SAFE + "?")
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header += f":{port}"
    given = {k.lower() for k in headers}
    lines = [f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"]
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}\r\n")
    if "accept" not in given:
        lines.append("Accept: application/json, */*;q=0.5\r\n")
    if parts.username is not None and "authorization" not in given:
        cred = f"{parts.username}:{parts.password or ''}".encode()
        lines.append(f"Authorization: Basic {base64.b64encode(cred).decode()}\r\n")
    lines.extend(f"{k}: {v}\r\n" for k, v in headers.items())
    lines.append("\r\n")
    text = "".join(lines)
    try:
        request = text.encode("latin-1")
    except UnicodeEncodeError:
        request = text.encode("utf-8")
    return Target(url, https, host, port, request)


class InvalidResponseError(Exception):
    """The peer did not answer with valid HTTP/1.x."""


class ConnectionClosedError(ConnectionError):
    """The connection closed before any byte of a response arrived."""


class ClientClosedError(ConnectionError):
    """The client was closed while the request was pending."""


class FastResponse:
    """Status, the headers a health check uses, and the (possibly truncated) body."""

    __slots__ = ("body", "content_type", "location", "status", "truncated")

    def __init__(
        self,
        status: int,
        content_type: str | None,
        location: str | None,
        body: bytes,
        truncated: bool,
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.location = location
        self.body = body
        self.truncated = truncated


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _Conn(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time."""

    def __init__(self, client: FastClient, pool: _HostPool) -> None:
        self._client = client
        self._pool = pool
        self._loop = client.loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = True  # holds one of the pool's connection slots
        self.requests = 0
        self.reusable = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[FastResponse] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset(0)

    def _reset(self, max_body: int) -> None:
        self._max_body = max_body
        self._got_bytes = False
        self._headers_done = False
        self._has_length = False
        self._content_type: str | None = None
        self._location: str | None = None
        self._body: list[bytes] = []
        self._body_len = 0
        self._truncated = False

    # --- used by FastClient -------------------------------------------------------------

    def request(self, data: bytes, max_body: int, deadline: float) -> asyncio.Future[FastResponse]:
        self._reset(max_body)
        self.requests += 1
        self.reusable = False
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._timer = self._loop.call_at(deadline, self._on_timeout)
        assert self.transport is not None
        self.transport.write(data)
        return waiter

    def abort(self, exc: BaseException | None = None) -> None:
        self.closed = True
        self._fail(exc)
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        self.transport = cast(asyncio.Transport, transport)
        self._client.conns.add(self)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for: the stream is out of step, never reuse it.
            self.abort()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.abort(InvalidResponseError("unexpected protocol upgrade"))
            return
        except httptools.HttpParserError as exc:
            self.abort(InvalidResponseError(str(exc) or type(exc).__name__))
            return
        if self._truncated and self._waiter is not None:
            self._finish(keep=False)
            self.abort()
        elif self.closed and self._waiter is None:
            self.abort()

    def eof_received(self) -> bool:
        self.closed = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client.conns.discard(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._headers_done and not self._has_length:
                self._finish(keep=False)  # body delimited by connection close
            elif not self._got_bytes:
                self._fail(ConnectionClosedError("connection closed before a response"))
            else:
                self._fail(InvalidResponseError("connection closed mid-response"))
        elif waiter is None:
            self._client.idle_lost(self._pool, self)

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:
            # A second response in one read with no request for it.
            self.closed = True
        self._reset(self._max_body)
        self._got_bytes = True  # a partial response is not a stale connection

    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n == b"content-type":
            self._content_type = value.decode("latin-1")
        elif n == b"location":
            self._location = value.decode("latin-1")
        elif n == b"content-length" or (n == b"transfer-encoding" and b"chunked" in value.lower()):
            self._has_length = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        if self._truncated:
            return
        room = self._max_body - self._body_len
        if len(body) > room:
            body = body[:room]
            self._truncated = True
        self._body.append(body)
        self._body_len += len(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim response; the real one follows
        if self._waiter is not None:
            self._finish(keep=self._parser.should_keep_alive() and not self.closed)

    # --- internals ----------------------------------------------------------------------

    def _finish(self, keep: bool) -> None:
        waiter = self._waiter
        self._waiter = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.reusable = keep
        if waiter is not None and not waiter.done():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            waiter.set_result(
                FastResponse(
                    self._parser.get_status_code(),
                    self._content_type,
                    self._location,
                    body,
                    self._truncated,
                )
            )

    def _fail(self, exc: BaseException | None) -> None:
        waiter = self._waiter
        self._waiter = None
        self.reusable = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if exc is not None and waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _on_timeout(self) -> None:
        self._timer = None
        self.abort(TimeoutError())


class _HostPool:
    __slots__ = ("idle", "open", "waiters")

    def __init__(self) -> None:
        self.idle: deque[_Conn] = deque()
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class FastClient:
    """Keep-alive GET client bound to one event loop. See the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool_size_per_host: int) -> None:
        self.loop = loop
        self.conns: set[_Conn] = set()
        self._limit = pool_size_per_host
        self._pools: dict[tuple[str, int], _HostPool] = {}
        self._closed = False

    async def get(
        self, host: str, port: int, request: bytes, max_body: int, deadline: float
    ) -> FastResponse:
        """Send ``request`` (a complete GET) to host:port and return the response."""
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _HostPool()
        conn = await self._acquire(pool, host, port, deadline, fresh=False)
        reused = conn.requests > 0
        try:
            resp = await conn.request(request, max_body, deadline)
        except ConnectionClosedError:
            self._release(pool, conn)
            if not reused:
                raise
            conn = await self._acquire(pool, host, port, deadline, fresh=True)
            try:
                resp = await conn.request(request, max_body, deadline)
            except BaseException:
                self._release(pool, conn)
                raise
        except BaseException:
            self._release(pool, conn)
            raise
        self._release(pool, conn)
        return resp

    def close(self) -> None:
        """Abort every connection and fail every pending request. Call on the loop."""
        self._closed = True
        for pool in self._pools.values():
            while pool.waiters:
                fut = pool.waiters.popleft()
                if not fut.done():
                    fut.set_exception(ClientClosedError("client closed"))
            pool.idle.clear()
        self._pools.clear()
        for conn in list(self.conns):
            # On a loop that is already closed a transport may refuse; close the rest.
            with contextlib.suppress(Exception):
                conn.abort(ClientClosedError("client closed"))
        self.conns.clear()

    def abandon(self) -> None:
        """Release sockets of a loop that is already closed (its transports cannot run
        their teardown): close the asyncio socket directly, forget everything else."""
        self._closed = True
        self._pools.clear()
        for conn in list(self.conns):
            conn.closed = True
            sock = getattr(conn.transport, "_sock", None)  # asyncio's selector transports
            if isinstance(sock, socket.socket):
                sock.close()
        self.conns.clear()

    def stats(self) -> dict[str, int]:
        """Open and idle connection counts, for tests and diagnostics."""
        return {
            "open": sum(p.open for p in self._pools.values()),
            "idle": sum(len(p.idle) for p in self._pools.values()),
        }

    # --- pool ---------------------------------------------------------------------------

    async def _acquire(
        self, pool: _HostPool, host: str, port: int, deadline: float, fresh: bool
    ) -> _Conn:
        while True:
            if self._closed:
                raise ClientClosedError("client closed")
            if not fresh:
                while pool.idle:
                    conn = pool.idle.pop()
                    if (
                        not conn.closed
                        and conn.transport is not None
                        and not conn.transport.is_closing()
                    ):
                        return conn
                    self._drop(pool, conn)
            if pool.open < self._limit:
                pool.open += 1
                try:
                    return await self._connect(pool, host, port, deadline)
                except BaseException:
                    pool.open -= 1
                    self._wake(pool)
                    raise
            fut: asyncio.Future[None] = self.loop.create_future()
            pool.waiters.append(fut)
            timer = self.loop.call_at(deadline, _expire, fut)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._wake(pool)  # woken but cancelled: pass the free slot on
                else:
                    with contextlib.suppress(ValueError):
                        pool.waiters.remove(fut)
                raise
            finally:
                timer.cancel()

    async def _connect(self, pool: _HostPool, host: str, port: int, deadline: float) -> _Conn:
        if deadline <= self.loop.time():
            raise TimeoutError()
        async with asyncio.timeout_at(deadline):
            _, conn = await self.loop.create_connection(lambda: _Conn(self, pool), host, port)
        return conn

    def _release(self, pool: _HostPool, conn: _Conn) -> None:
        if conn.reusable and not conn.closed and not self._closed:
            conn.idle_since = self.loop.time()
            pool.idle.append(conn)
            self._wake(pool)
        else:
            conn.abort()
            self._drop(pool, conn)

    def _drop(self, pool: _HostPool, conn: _Conn) -> None:
        if conn.counted:
            conn.counted = False
            pool.open -= 1
            self._wake(pool)

    def _wake(self, pool: _HostPool) -> None:
        while pool.waiters:
            fut = pool.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def idle_lost(self, pool: _HostPool, conn: _Conn) -> None:
        """An idle connection was closed by its peer: forget it and free its slot."""
        with contextlib.suppress(ValueError):
            pool.idle.remove(conn)
        self._drop(pool, conn)
