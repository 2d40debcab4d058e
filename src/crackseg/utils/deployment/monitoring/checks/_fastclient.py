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
* At most ``pool_size_per_host`` connections per (host, port, scheme) and at most
  ``max_connections`` in all (in use, idle or connecting: every socket counts). Idle
  connections are reused (newest first) for up to ``idle_max_s``; one the server closes
  while idle is dropped at once, one idle longer is closed (a middlebox may have
  forgotten it silently). With the total reached, a request for an origin without an
  idle connection closes the least recently used idle connection of another origin and
  connects; with none idle it waits (the wait counts against its deadline; past it,
  :class:`PoolTimeoutError`, a ``TimeoutError`` naming what it waited for).
* Waiting is fair: within an origin first come, first served; across origins waiting
  for the total, round robin. A freed connection or slot is handed to the waiter it is
  for at once (a newcomer cannot take it first); a waiter that times out or is
  cancelled is removed, and whatever it had been handed is passed on.
* A socket a slot was freed from may close only on the next loop turn (asyncio closes
  it there), so every new connection first yields once: the sockets open never exceed
  the slots counted.
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
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from crackseg.utils.deployment.monitoring.checks._deadlines import Deadlines
from crackseg.utils.deployment.monitoring.checks._fastconn import (
    ClientClosedError,
    Conn,
    ConnectionClosedError,
    FastResponse,
    HostPool,
    StalledError,
)
from crackseg.utils.deployment.monitoring.checks._slots import (
    Key,
    Slots,
    default_max_connections,
)
from crackseg.utils.deployment.monitoring.checks._target import (
    USER_AGENT,
    Target,
    parse_target,
)

__all__ = [
    "USER_AGENT",
    "Exchange",
    "FastClient",
    "HostPool",
    "Target",
    "default_max_connections",
    "outcome_of",
    "parse_target",
]
logger = logging.getLogger("crackseg.utils.deployment.health_monitoring")

#: Idle longer than this and a middlebox may have dropped the connection silently.
_IDLE_MAX_S = 60.0
#: On a reused connection, silence past this share of the time left starts a fresh try.
_STALL_SHARE = 0.5


_T = TypeVar("_T")


def outcome_of(task: asyncio.Task[_T]) -> _T | BaseException:
    """A finished task's result or its error; cancelled, it is the client closing."""
    if task.cancelled():
        return ClientClosedError("client closed")
    exc = task.exception()
    return task.result() if exc is None else exc


def _consume(task: asyncio.Task[FastResponse]) -> None:
    if not task.cancelled():
        task.exception()  # a lost race's error is expected, not "never retrieved"


class Exchange:
    """A reusable stand-in for the future of one request at a time (:meth:`FastClient.start`).

    Subclasses say what an answer means in :meth:`answered`. Kept by the caller (one per
    monitored deployment), it holds what a future, a callback and its arguments held per
    request.
    """

    __slots__ = (
        "client",
        "conn",
        "deadline",
        "key",
        "max_body",
        "outcome",
        "pool",
        "request",
        "settled",
        "tls",
    )

    def __init__(self) -> None:
        self.client: FastClient | None = None
        self.pool: HostPool | None = None
        self.conn: Conn | None = None
        self.key: Key = ("", 0, None)
        self.tls: ssl.SSLContext | None = None
        self.request = b""
        self.max_body = 0
        self.deadline = 0.0
        self.outcome: FastResponse | BaseException | None = None
        self.settled = True

    def answered(self, outcome: FastResponse | BaseException) -> None:
        """The response, or the error :meth:`FastClient.get` would have raised (on the loop)."""
        raise NotImplementedError

    # What Conn calls, as it would a future's (inside its parser: record, handle later).
    def done(self) -> bool:
        return self.settled

    def set_result(self, result: FastResponse, /) -> None:
        self._settle(result)

    def set_exception(self, exception: BaseException, /) -> None:
        self._settle(exception)

    def _settle(self, outcome: FastResponse | BaseException) -> None:
        self.settled = True
        self.outcome = outcome
        assert self.client is not None
        self.client._ready(self)


class FastClient:
    """Keep-alive GET client bound to one event loop. See the module docstring."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pool_size_per_host: int,
        idle_max_s: float | None = None,
        max_connections: int | None = None,
    ) -> None:
        self.loop = loop
        self.conns: set[Conn] = set()
        self.slots = Slots(
            loop,
            pool_size_per_host,
            default_max_connections() if max_connections is None else max_connections,
            _IDLE_MAX_S if idle_max_s is None else idle_max_s,
        )
        self.deadlines = Deadlines(loop)
        self._answers: list[Exchange] = []

    @property
    def max_connections(self) -> int:
        """The bound on all connections of this client."""
        return self.slots.total_max

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
        key = (host, port, tls)
        slots = self.slots
        pool = slots.pools.get(key)
        if pool is None:
            pool = slots.pools[key] = HostPool()
        # The common case without a coroutine: reuse the newest idle connection.
        conn = self._idle_conn(pool) if pool.idle and not slots.closed else None
        if conn is None:
            conn = await self._acquire(pool, key, tls, deadline, fresh=False)
        if conn.requests == 0:
            return await self._send(pool, conn, request, max_body, deadline)
        now = self.loop.time()
        stall_at = now + (deadline - now) * _STALL_SHARE
        try:
            resp = await conn.request(request, max_body, deadline, stall_at)
        except ConnectionClosedError:
            slots.release(pool, conn)  # EOF or reset before any byte: it went stale
            return await self._fresh(pool, key, tls, request, max_body, deadline)
        except StalledError:
            return await self._race(pool, conn, key, tls, request, max_body, deadline)
        except BaseException:
            slots.release(pool, conn)
            raise
        slots.release(pool, conn)
        return resp

    def start(
        self,
        host: str,
        port: int,
        request: bytes,
        max_body: int,
        deadline: float,
        tls: ssl.SSLContext | None,
        exchange: Exchange,
    ) -> bool:
        """:meth:`get` without a task, when an idle connection is at hand: False if none is
        (then await :meth:`get`). ``exchange.answered`` gets the response or the error get()
        would raise, on the loop; a stale or silent connection is retried as get() retries
        it. One exchange carries one request at a time.

        Why: in the monitor's steady state every check finds an idle connection, and a task
        per check was a fifth of the engine's cost per check (issue 14). Why an exchange the
        caller keeps, not a future and a callback per request: what a check allocates while
        in flight is alive when a young-generation collection runs, so it is promoted, and
        those promotions made the collector run full collections of every deployment's
        objects (~90 ms at 10,000, ~0.7 s at 100,000) several times a minute.
        """
        if self.slots.closed:
            return False
        key = (host, port, tls)
        pool = self.slots.pools.get(key)
        if pool is None or not pool.idle:
            return False
        conn = self._idle_conn(pool)
        if conn is None:
            return False
        if exchange.key != key:
            exchange.key = key  # kept when equal: a new tuple per check would be one more object
        exchange.client, exchange.pool, exchange.conn = self, pool, conn
        exchange.tls, exchange.request, exchange.max_body = tls, request, max_body
        exchange.deadline = deadline
        exchange.settled = False
        now = self.loop.time()
        conn.request_into(exchange, request, max_body, deadline,
                          now + (deadline - now) * _STALL_SHARE)  # fmt: skip
        return True

    def _ready(self, exchange: Exchange) -> None:
        """An exchange's connection answered (inside its parser): handle it after the read,
        every answer of one loop turn in one callback."""
        self._answers.append(exchange)
        if len(self._answers) == 1:
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        answers, self._answers = self._answers, []
        for ex in answers:
            try:
                self._answered(ex)
            except Exception:
                logger.exception("a health check's answer could not be handled")

    def _answered(self, ex: Exchange) -> None:
        outcome, ex.outcome = ex.outcome, None
        pool, conn = ex.pool, ex.conn
        assert pool is not None and conn is not None and outcome is not None
        ex.conn = None
        if isinstance(outcome, StalledError):
            self._chain(self._race(pool, conn, ex.key, ex.tls, ex.request, ex.max_body,
                                   ex.deadline), ex.answered)  # fmt: skip
            return
        self.slots.release(pool, conn)
        if isinstance(outcome, ConnectionClosedError):  # EOF or reset before any byte: stale
            self._chain(self._fresh(pool, ex.key, ex.tls, ex.request, ex.max_body, ex.deadline),
                        ex.answered)  # fmt: skip
        else:
            ex.answered(outcome)

    def _chain(
        self,
        coro: Coroutine[Any, Any, FastResponse],
        done: Callable[[FastResponse | BaseException], None],
    ) -> None:
        self.loop.create_task(coro).add_done_callback(lambda task: done(outcome_of(task)))

    def close(self) -> None:
        """Abort every connection and fail every pending request. Call on the loop."""
        self.slots.close()
        for conn in list(self.conns):
            # On a loop that is already closed a transport may refuse; close the rest.
            with contextlib.suppress(Exception):
                conn.abort(ClientClosedError("client closed"))
        self.conns.clear()
        self.deadlines.close()

    def abandon(self) -> None:
        """Release sockets of a loop that is already closed (its transports cannot run
        their teardown): close the asyncio socket directly, forget everything else."""
        self.slots.forget()
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
        """Open (counted: in use, idle or connecting) and idle connections."""
        return {"open": self.slots.total, "idle": len(self.slots.lru)}

    def idle_lost(self, pool: HostPool, conn: Conn) -> None:
        """An idle connection was closed by its peer: forget it and free its slot."""
        self.slots.idle_lost(pool, conn)

    # --- one request ----------------------------------------------------------------------

    async def _send(
        self, pool: HostPool, conn: Conn, request: bytes, max_body: int, deadline: float
    ) -> FastResponse:
        try:
            return await conn.request(request, max_body, deadline)
        finally:
            self.slots.release(pool, conn)

    async def _fresh(
        self,
        pool: HostPool,
        key: Key,
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
        key: Key,
        tls: ssl.SSLContext | None,
        request: bytes,
        max_body: int,
        deadline: float,
    ) -> FastResponse:
        """A reused connection went silent: try a fresh one and take the first answer.

        The silent one's origin slot goes to the fresh try (a connection the server has
        forgotten costs it nothing); its socket stays open until the race ends, so the
        fresh try takes a slot of the total. With none to spare the silent one is closed
        and its slot taken: a second chance matters more than waiting on a connection
        that may never answer.
        """
        old = stalled.waiter  # after a stall, always a future (Conn._on_stall)
        if not isinstance(old, asyncio.Future) or not self.slots.reserve_total():
            stalled.abort()
            stalled.counted = False  # its slot (origin and total) is the fresh try's now
            conn = await self._connect(pool, key, tls, deadline)
            return await self._send(pool, conn, request, max_body, deadline)
        stalled.racing = True
        started: list[bool] = []
        fresh = self.loop.create_task(
            self._on_slot(started, pool, key, tls, request, max_body, deadline)
        )
        fresh.add_done_callback(_consume)
        try:
            done, _ = await asyncio.wait((old, fresh), return_when=asyncio.FIRST_COMPLETED)
            first, other = (old, fresh) if old in done else (fresh, old)
            if first.exception() is None:
                return first.result()
            return await other
        finally:
            stalled.abort()  # never reused: the stream may be out of step
            self.slots.drop(pool, stalled)
            fresh.cancel()
            if not started:
                # Cancelled before it ran, so it never will: the slot it held comes back.
                self.slots.give_back(pool)

    async def _on_slot(
        self,
        started: list[bool],
        pool: HostPool,
        key: Key,
        tls: ssl.SSLContext | None,
        request: bytes,
        max_body: int,
        deadline: float,
    ) -> FastResponse:
        started.append(True)  # from here on _connect gives the slot back if need be
        conn = await self._connect(pool, key, tls, deadline)
        return await self._send(pool, conn, request, max_body, deadline)

    # --- pool -----------------------------------------------------------------------------

    async def _acquire(
        self,
        pool: HostPool,
        key: Key,
        tls: ssl.SSLContext | None,
        deadline: float,
        fresh: bool,
    ) -> Conn:
        slots = self.slots
        while True:
            if slots.closed:
                raise ClientClosedError("client closed")
            if not fresh:
                idle = self._idle_conn(pool)
                if idle is not None:
                    return idle
            if slots.reserve(pool):
                return await self._connect(pool, key, tls, deadline)
            handed = await slots.wait(pool, deadline)
            if handed is None:
                return await self._connect(pool, key, tls, deadline)
            if _usable(handed):
                return handed
            # The peer closed it on the way here (its slot is already passed on).
            handed.abort()
            slots.drop(pool, handed)

    def _idle_conn(self, pool: HostPool) -> Conn | None:
        """The newest idle connection still fit for reuse; the unfit ones are closed."""
        slots = self.slots
        oldest_ok = self.loop.time() - slots.idle_max
        while pool.idle:
            conn = pool.idle.pop()
            del slots.lru[conn]
            if conn.idle_since >= oldest_ok and _usable(conn):
                return conn
            conn.abort()
            slots.drop(pool, conn)
        return None

    async def _connect(
        self, pool: HostPool, key: Key, tls: ssl.SSLContext | None, deadline: float
    ) -> Conn:
        """Open a connection on a slot already counted for it; give the slot back on failure."""
        try:
            # A socket aborted on this loop turn closes on the next: let it, so the sockets
            # open never exceed the slots counted.
            await asyncio.sleep(0)
            if self.slots.closed:
                raise ClientClosedError("client closed")
            if deadline <= self.loop.time():
                raise TimeoutError()
            host, port, _ = key
            async with asyncio.timeout_at(deadline):
                if tls is None:
                    _, conn = await self.loop.create_connection(
                        lambda: Conn(self, pool), host, port
                    )
                else:
                    _, conn = await self.loop.create_connection(
                        lambda: Conn(self, pool), host, port, ssl=tls, server_hostname=host
                    )
        except BaseException:
            self.slots.give_back(pool)
            raise
        return conn


def _usable(conn: Conn) -> bool:
    transport = conn.transport
    return not conn.closed and transport is not None and not transport.is_closing()
