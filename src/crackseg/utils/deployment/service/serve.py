"""Serve an aiohttp application on the running loop: one way, for the web face and the sample service.

Connections are bounded so that clients which never finish a request cannot take the
server down (aiohttp alone keeps a silent connection for an hour and accepts until the
process runs out of file descriptors):

- a connection must deliver a complete request head within :data:`HEAD_TIMEOUT_S` of
  opening, or within :data:`KEEPALIVE_TIMEOUT_S` of its previous response; one that stays
  silent or drips its head is closed (so is a client that takes longer than that to read
  a response: the timer starts when the handler returns);
- at most :func:`connection_cap` connections are open at once, a number that adapts to the
  process's descriptor limit (``RLIMIT_NOFILE``) and leaves half of what is free for the
  checks, the store and the machine sampling; at the cap a new connection displaces the
  connection idle the longest (so ``/healthz`` still answers while thousands of idle
  connections are held), or is closed when every connection is busy.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections import OrderedDict
from typing import Any, cast

from aiohttp import web

__all__ = [
    "HEAD_TIMEOUT_S",
    "KEEPALIVE_TIMEOUT_S",
    "MAX_CONNECTIONS",
    "ConnectionGuard",
    "connection_cap",
    "guard_of",
    "serve_app",
]

#: Seconds a new connection has to send a complete request head.
HEAD_TIMEOUT_S = 10.0
#: Seconds a kept-alive connection has, after a response, to send the next complete request
#: head (the status page polls every 5 s).
KEEPALIVE_TIMEOUT_S = 15.0
#: Upper bound on open connections, whatever the descriptor limit.
MAX_CONNECTIONS = 4096
_MIN_CONNECTIONS = 8


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64  # no /proc: a typical count for this process


def connection_cap(limit: int = MAX_CONNECTIONS) -> int:
    """Connections the server may hold: half of the descriptors still free under the soft
    ``RLIMIT_NOFILE`` (the rest stays for checks, the store and host sampling), at most
    ``limit``, at least 8."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limit
    free = soft - _open_descriptors()
    return max(_MIN_CONNECTIONS, min(limit, free // 2))


class _Connection(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol with the guard's head deadline."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self.guard, self.inner = guard, inner
        self.transport: asyncio.Transport | None = None
        self.busy = 0  # requests between head and handler's end
        self.admitted = False
        self._deadline: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol, forwarded ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        if not self.guard.admit(self):
            self.transport.abort()
            return
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.release(self)
        if self.admitted:
            self.inner.connection_lost(exc)

    # -- the head deadline -------------------------------------------------------------
    def arm(self, seconds: float) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.busy == 0:
            self.shed()

    def shed(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def request_started(self) -> None:
        self.busy += 1
        self._disarm()
        self.guard.busy(self)

    def request_ended(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self.arm(self.guard.keepalive_timeout)
            self.guard.idle(self)


class ConnectionGuard:
    """Admission and deadlines for one server's connections (see the module docstring)."""

    def __init__(
        self,
        cap: int,
        head_timeout: float = HEAD_TIMEOUT_S,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT_S,
    ) -> None:
        self.cap, self.head_timeout, self.keepalive_timeout = cap, head_timeout, keepalive_timeout
        self._idle: OrderedDict[_Connection, None] = OrderedDict()  # oldest idle first
        self._open: set[_Connection] = set()
        self.shed_count = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def factory(self, server: web.Server) -> Any:
        """The protocol factory to hand ``loop.create_server``."""
        return lambda: _Connection(self, server())

    def admit(self, conn: _Connection) -> bool:
        if len(self._open) >= self.cap:
            if not self._idle:
                self.shed_count += 1
                return False  # every connection is busy: refuse the newcomer
            oldest, _ = self._idle.popitem(last=False)
            self._open.discard(oldest)
            oldest.shed()
            self.shed_count += 1
        conn.admitted = True
        self._open.add(conn)
        self._idle[conn] = None
        conn.arm(self.head_timeout)
        return True

    def release(self, conn: _Connection) -> None:
        self._idle.pop(conn, None)
        self._open.discard(conn)

    def busy(self, conn: _Connection) -> None:
        self._idle.pop(conn, None)

    def idle(self, conn: _Connection) -> None:
        if conn in self._open:
            self._idle[conn] = None


_GUARD = web.AppKey("crackseg_connection_guard", ConnectionGuard)


@web.middleware
async def _track_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    transport = request.transport
    conn = transport.get_protocol() if transport is not None else None
    if not isinstance(conn, _Connection):
        result: web.StreamResponse = await handler(request)
        return result
    conn.request_started()
    try:
        result = await handler(request)
        return result
    finally:
        conn.request_ended()


class _GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard):
        super().__init__(runner)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.factory(server), self._host, self._port, backlog=128, reuse_address=True
        )


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float,
    max_connections: int | None = None,
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (0: any free port); return the runner and the bound port.

    Connections are guarded as the module docstring says; ``max_connections`` (default
    :func:`connection_cap`) bounds them; :func:`guard_of` finds the guard. Stop with ``await runner.cleanup()``. A failed bind cleans up before
    it raises.
    """
    guard = ConnectionGuard(max_connections or connection_cap())
    app[_GUARD] = guard
    app.middlewares.insert(0, _track_requests)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=shutdown_timeout,
        keepalive_timeout=KEEPALIVE_TIMEOUT_S + 1,  # a backstop: ours closes first
    )  # fmt: skip
    await runner.setup()
    site = _GuardedSite(runner, host, port, guard)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


def guard_of(app: web.Application) -> ConnectionGuard | None:
    """The connection guard :func:`serve_app` put on ``app``, if it serves it."""
    return app.get(_GUARD)
