"""A lean HTTP/1.1 GET client for health checks, over plain TCP or TLS alike.

Why it exists: aiohttp's request/response machinery costs ~0.16-0.21 ms of CPU per
check, which caps a core at ~5,000 checks/s. A health check needs far less: send one
GET, parse the status line and a few headers with httptools (llhttp, as uvicorn uses),
read a bounded body and keep the connection for the next check. ``https://`` differs
only in the transport (asyncio's TLS), so both schemes share one parser, one set of
limits and one set of error texts.

Contract of :class:`FastClient` (one instance per event loop, used only from it):

* ``get()`` completes within the deadline given in ``loop.time()`` terms, covering the
  wait for a pool slot, connect, TLS handshake, send, headers and body; past it,
  ``TimeoutError``.
* At most ``pool_size_per_host`` connections per (host, port, scheme); extra requests
  wait for a free one (the wait counts against their deadline). Idle connections are
  reused for up to ``idle_max_s``; one the server closes while idle is dropped at once,
  one idle longer is closed (a middlebox may have forgotten it silently).
* A reused connection that fails before any byte of the response arrives is retried
  once on a fresh connection, within the same deadline (GET is idempotent): at once on
  EOF or reset; on silence, from half the remaining time on, while still listening on
  the old one (a slow server is not mistaken for a dead connection).
* The response head is bounded (see :mod:`._fastconn`); bodies delimited by
  Content-Length, chunked encoding or connection close are read, gzip/deflate decoded,
  up to ``max_body`` bytes; past that the rest is not read and the connection dropped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from crackseg.utils.deployment.monitoring.checks._fastconn import (
    ClientClosedError,
    Conn,
    ConnectionClosedError,
    FastResponse,
    StalledError,
)

USER_AGENT = "crackseg-health/0.1"
_SAFE = "/%:@!$&'()*+,;=-._~"
#: Idle longer than this and a middlebox may have dropped the connection silently.
_IDLE_MAX_S = 60.0
#: On a reused connection, silence past this share of the time left starts a fresh try.
_STALL_SHARE = 0.5

_Key = tuple[str, int, bool]


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed check URL; ``request`` is the complete GET for the fast path."""

    url: str
    https: bool
    host: str
    port: int
    request: bytes

    @property
    def origin(self) -> tuple[bool, str, int]:
        """(https, host, port): what a redirect must keep for credentials to follow it."""
        return (self.https, self.host, self.port)


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
    lines = [f"GET {path} HTTP/1.1\r\n"]
    if "host" not in given:  # a configured Host (virtual hosting) replaces ours
        lines.append(f"Host: {host_header}\r\n")
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


class HostPool:
    """Connections to one (host, port, scheme)."""

    __slots__ = ("idle", "open", "waiters")

    def __init__(self) -> None:
        self.idle: deque[Conn] = deque()  # oldest left, newest right
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _consume(task: asyncio.Task[FastResponse]) -> None:
    if not task.cancelled():
        task.exception()  # a lost race's error is expected, not "never retrieved"


class FastClient:
    """Keep-alive GET client bound to one event loop. See the module docstring."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pool_size_per_host: int,
        idle_max_s: float | None = None,
    ) -> None:
        self.loop = loop
        self.conns: set[Conn] = set()
        self._limit = pool_size_per_host
        self._idle_max = _IDLE_MAX_S if idle_max_s is None else idle_max_s
        self._pools: dict[_Key, HostPool] = {}
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None

    async def get(
        self,
        host: str,
        port: int,
        request: bytes,
        max_body: int,
        deadline: float,
        tls: ssl.SSLContext | None = None,
    ) -> FastResponse:
        """Send ``request`` (a complete GET) to host:port, over TLS if ``tls`` is given."""
        key = (host, port, tls is not None)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = HostPool()
        conn = await self._acquire(pool, key, tls, deadline, fresh=False)
        if conn.requests == 0:
            return await self._send(pool, conn, request, max_body, deadline)
        now = self.loop.time()
        stall_at = now + (deadline - now) * _STALL_SHARE
        try:
            resp = await conn.request(request, max_body, deadline, stall_at)
        except ConnectionClosedError:
            self._release(pool, conn)  # EOF or reset before any byte: it went stale
            return await self._fresh(pool, key, tls, request, max_body, deadline)
        except StalledError:
            return await self._race(pool, conn, key, tls, request, max_body, deadline)
        except BaseException:
            self._release(pool, conn)
            raise
        self._release(pool, conn)
        return resp

    def close(self) -> None:
        """Abort every connection and fail every pending request. Call on the loop."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
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
        self._sweeper = None
        self._pools.clear()
        for conn in list(self.conns):
            conn.closed = True
            sock = getattr(conn.transport, "_sock", None)  # asyncio's selector transports
            if sock is None and conn.transport is not None:
                with contextlib.suppress(Exception):  # TLS: the socket under the SSL layer
                    sock = conn.transport.get_extra_info("socket")
            sock = getattr(sock, "_sock", sock)  # asyncio's TransportSocket wrapper
            if isinstance(sock, socket.socket):
                sock.close()
        self.conns.clear()

    def stats(self) -> dict[str, int]:
        """Open and idle connection counts, for tests and diagnostics."""
        return {
            "open": sum(p.open for p in self._pools.values()),
            "idle": sum(len(p.idle) for p in self._pools.values()),
        }

    # --- one request ----------------------------------------------------------------------

    async def _send(
        self, pool: HostPool, conn: Conn, request: bytes, max_body: int, deadline: float
    ) -> FastResponse:
        try:
            return await conn.request(request, max_body, deadline)
        finally:
            self._release(pool, conn)

    async def _fresh(
        self,
        pool: HostPool,
        key: _Key,
        tls: ssl.SSLContext | None,
        request: bytes,
        max_body: int,
        deadline: float,
    ) -> FastResponse:
        conn = await self._acquire(pool, key, tls, deadline, fresh=True)
        return await self._send(pool, conn, request, max_body, deadline)

    async def _race(
        self,
        pool: HostPool,
        stalled: Conn,
        key: _Key,
        tls: ssl.SSLContext | None,
        request: bytes,
        max_body: int,
        deadline: float,
    ) -> FastResponse:
        """A reused connection went silent: try a fresh one and take the first answer."""
        old = stalled.waiter
        self._drop(pool, stalled)  # its slot goes to the fresh try; it is never reused
        fresh = self.loop.create_task(self._fresh(pool, key, tls, request, max_body, deadline))
        fresh.add_done_callback(_consume)
        try:
            if old is None:
                return await fresh
            done, _ = await asyncio.wait((old, fresh), return_when=asyncio.FIRST_COMPLETED)
            first, other = (old, fresh) if old in done else (fresh, old)
            if first.exception() is None:
                return first.result()
            return await other
        finally:
            stalled.abort()
            fresh.cancel()

    # --- pool -----------------------------------------------------------------------------

    async def _acquire(
        self,
        pool: HostPool,
        key: _Key,
        tls: ssl.SSLContext | None,
        deadline: float,
        fresh: bool,
    ) -> Conn:
        while True:
            if self._closed:
                raise ClientClosedError("client closed")
            if not fresh:
                oldest_ok = self.loop.time() - self._idle_max
                while pool.idle:
                    conn = pool.idle.pop()
                    if (
                        not conn.closed
                        and conn.idle_since >= oldest_ok
                        and conn.transport is not None
                        and not conn.transport.is_closing()
                    ):
                        return conn
                    conn.abort()
                    self._drop(pool, conn)
            if pool.open < self._limit:
                pool.open += 1
                try:
                    return await self._connect(pool, key, tls, deadline)
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

    async def _connect(
        self, pool: HostPool, key: _Key, tls: ssl.SSLContext | None, deadline: float
    ) -> Conn:
        if deadline <= self.loop.time():
            raise TimeoutError()
        host, port, _ = key
        async with asyncio.timeout_at(deadline):
            if tls is None:
                _, conn = await self.loop.create_connection(lambda: Conn(self, pool), host, port)
            else:
                _, conn = await self.loop.create_connection(
                    lambda: Conn(self, pool), host, port, ssl=tls, server_hostname=host
                )
        return conn

    def _release(self, pool: HostPool, conn: Conn) -> None:
        if conn.reusable and not conn.closed and not self._closed and conn.counted:
            conn.idle_since = self.loop.time()
            pool.idle.append(conn)
            self._wake(pool)
            if self._sweeper is None:
                self._sweeper = self.loop.call_later(self._idle_max, self._sweep)
        else:
            conn.abort()
            self._drop(pool, conn)

    def _drop(self, pool: HostPool, conn: Conn) -> None:
        if conn.counted:
            conn.counted = False
            pool.open -= 1
            self._wake(pool)

    def _wake(self, pool: HostPool) -> None:
        while pool.waiters:
            fut = pool.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _sweep(self) -> None:
        """Close connections idle past the bound, and forget hosts nobody checks now."""
        self._sweeper = None
        if self._closed:
            return
        oldest_ok = self.loop.time() - self._idle_max
        for key, pool in list(self._pools.items()):
            while pool.idle and pool.idle[0].idle_since < oldest_ok:
                conn = pool.idle.popleft()
                conn.abort()
                self._drop(pool, conn)
            if not pool.open and not pool.idle and not pool.waiters:
                del self._pools[key]
        if any(pool.idle for pool in self._pools.values()):
            self._sweeper = self.loop.call_later(self._idle_max / 2, self._sweep)

    def idle_lost(self, pool: HostPool, conn: Conn) -> None:
        """An idle connection was closed by its peer: forget it and free its slot."""
        with contextlib.suppress(ValueError):
            pool.idle.remove(conn)
        self._drop(pool, conn)
