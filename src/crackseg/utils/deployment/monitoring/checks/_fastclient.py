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
import resource
import socket
import ssl
from collections import OrderedDict, deque

from crackseg.utils.deployment.monitoring.checks._fastconn import (
    ClientClosedError,
    Conn,
    ConnectionClosedError,
    FastResponse,
    PoolTimeoutError,
    StalledError,
)
from crackseg.utils.deployment.monitoring.checks._target import (
    USER_AGENT,
    Target,
    parse_target,
)

__all__ = [
    "USER_AGENT",
    "FastClient",
    "HostPool",
    "Target",
    "default_max_connections",
    "parse_target",
]
#: Idle longer than this and a middlebox may have dropped the connection silently.
_IDLE_MAX_S = 60.0
#: On a reused connection, silence past this share of the time left starts a fresh try.
_STALL_SHARE = 0.5

#: Bounds of the default total: never below a usable pool, never more sockets than any
#: monitor needs for health checks even when the fd limit is unlimited.
_MIN_DEFAULT_CONNECTIONS = 8
_MAX_DEFAULT_CONNECTIONS = 16_384

_Key = tuple[str, int, bool]


def default_max_connections() -> int:
    """A quarter of the soft ``RLIMIT_NOFILE`` (``ulimit -n``), within [8, 16384].

    A quarter, because a checker has a pool per event loop (the monitor's and the
    synchronous facade's: half the fds at most) and the process keeps the rest for its
    store, logs, API and notification sockets and subprocess pipes.
    """
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        soft = 1024
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return _MAX_DEFAULT_CONNECTIONS
    return max(_MIN_DEFAULT_CONNECTIONS, min(soft // 4, _MAX_DEFAULT_CONNECTIONS))


class HostPool:
    """Connections to one (host, port, scheme)."""

    __slots__ = ("idle", "open", "queued", "waiters")

    def __init__(self) -> None:
        self.idle: deque[Conn] = deque()  # oldest left, newest right
        self.open = 0
        # Each waiter is handed a Conn to reuse, or None: a slot counted for it.
        self.waiters: deque[asyncio.Future[Conn | None]] = deque()
        self.queued = False  # in FastClient._ready (maybe with no waiter left: skipped)


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
        max_connections: int | None = None,
    ) -> None:
        self.loop = loop
        self.conns: set[Conn] = set()
        self._limit = pool_size_per_host
        self._max = default_max_connections() if max_connections is None else max_connections
        self._idle_max = _IDLE_MAX_S if idle_max_s is None else idle_max_s
        self._pools: dict[_Key, HostPool] = {}
        self._total = 0  # slots counted over every pool: in use, idle and connecting
        self._lru: OrderedDict[Conn, None] = OrderedDict()  # every idle conn, oldest first
        self._ready: deque[HostPool] = deque()  # pools with room whose waiters need a slot
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def max_connections(self) -> int:
        """The bound on all connections of this client."""
        return self._max

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
        # The common case inline (no coroutine for it): reuse the newest idle connection.
        idle = pool.idle
        if idle and not self._closed:
            conn = idle.pop()
            del self._lru[conn]
            if (
                conn.closed
                or conn.idle_since < self.loop.time() - self._idle_max
                or conn.transport is None
                or conn.transport.is_closing()
            ):
                conn.abort()
                self._drop(pool, conn)
                conn = await self._acquire(pool, key, tls, deadline, fresh=False)
        else:
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
        self._lru.clear()
        self._ready.clear()
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
        self._lru.clear()
        self._ready.clear()
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
        return {"open": self._total, "idle": len(self._lru)}

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
        """A reused connection went silent: try a fresh one and take the first answer.

        The silent one's origin slot goes to the fresh try (a connection the server has
        forgotten costs it nothing); its socket stays open until the race ends, so the
        fresh try takes a slot of the total. With none to spare the silent one is closed
        and its slot taken: a second chance matters more than waiting on a connection
        that may never answer.
        """
        old = stalled.waiter
        if old is None or not (self._total < self._max or self._evict_lru()):
            stalled.abort()
            stalled.counted = False  # its slot (origin and total) is the fresh try's now
            conn = await self._connect(pool, key, tls, deadline)
            return await self._send(pool, conn, request, max_body, deadline)
        stalled.racing = True
        self._total += 1
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
            self._drop(pool, stalled)
            fresh.cancel()
            if not started and not self._closed:
                # Cancelled before it ran, so it never will: the slot it held comes back.
                pool.open -= 1
                self._total -= 1
                self._freed(pool)

    async def _on_slot(
        self,
        started: list[bool],
        pool: HostPool,
        key: _Key,
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
                    del self._lru[conn]
                    if (
                        not conn.closed
                        and conn.idle_since >= oldest_ok
                        and conn.transport is not None
                        and not conn.transport.is_closing()
                    ):
                        return conn
                    conn.abort()
                    self._drop(pool, conn)
            if (
                pool.open < self._limit
                and not pool.waiters
                and (self._total < self._max or self._evict_lru())
            ):
                pool.open += 1
                self._total += 1
                return await self._connect(pool, key, tls, deadline)
            fut: asyncio.Future[Conn | None] = self.loop.create_future()
            pool.waiters.append(fut)
            if pool.open < self._limit and not pool.queued:
                pool.queued = True  # it waits for the total, not for its own limit
                self._ready.append(pool)
            timer = self.loop.call_at(deadline, self._expire, pool, fut)
            try:
                handed = await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._pass_on(pool, fut.result())  # handed over, then cancelled
                else:
                    with contextlib.suppress(ValueError):
                        pool.waiters.remove(fut)
                raise
            finally:
                timer.cancel()
            if handed is None:
                return await self._connect(pool, key, tls, deadline)
            if _usable(handed):
                return handed
            # The peer closed it on the way here (its slot is already passed on).
            handed.abort()
            self._drop(pool, handed)

    async def _connect(
        self, pool: HostPool, key: _Key, tls: ssl.SSLContext | None, deadline: float
    ) -> Conn:
        """Open a connection on a slot already counted for it; give the slot back on failure."""
        try:
            # A socket aborted on this loop turn closes on the next: let it, so the sockets
            # open never exceed the slots counted.
            await asyncio.sleep(0)
            if self._closed:
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
            if not self._closed:
                pool.open -= 1
                self._total -= 1
                self._freed(pool)
            raise
        return conn

    def _release(self, pool: HostPool, conn: Conn) -> None:
        if not (conn.reusable and not conn.closed and not self._closed and conn.counted):
            conn.abort()
            self._drop(pool, conn)
            return
        if self._ready and not self._take_turn(pool):
            # Origins wait for the total and the turn is another's: this connection
            # makes room for it (it would be the least recently used idle one).
            conn.abort()
            self._drop(pool, conn)
            return
        waiters = pool.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)  # reused at once by the first in line
                return
        conn.idle_since = self.loop.time()
        pool.idle.append(conn)
        self._lru[conn] = None
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._idle_max, self._sweep)

    def _take_turn(self, pool: HostPool) -> bool:
        """With origins waiting for the total: may ``pool`` keep its released connection?

        Its waiters join the round robin. It keeps the connection for its first waiter
        when it is next in turn, or when the origin next in turn already holds
        connections and not fewer than this one less one: connections move between
        origins only to give one to an origin holding none or to even out the counts,
        so a saturated pool churns no more than fairness needs.
        """
        ready = self._ready
        waiters = pool.waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        if waiters and not pool.queued:
            pool.queued = True
            ready.append(pool)
        while ready:
            head = ready[0]
            hw = head.waiters
            while hw and hw[0].done():
                hw.popleft()
            if hw:
                break
            ready.popleft()  # every waiter of it timed out or was cancelled
            head.queued = False
        if not ready:
            return True
        head = ready[0]
        if head is pool:
            ready.popleft()
            if len(waiters) > 1:
                ready.append(pool)  # its next waiter after the others
            else:
                pool.queued = False
            return True
        return bool(waiters) and head.open > 0 and head.open + 1 >= pool.open

    def _drop(self, pool: HostPool, conn: Conn) -> None:
        if conn.counted:
            conn.counted = False
            if not conn.racing:  # a racing one's origin slot went to its fresh try
                pool.open -= 1
            self._total -= 1
            self._freed(pool)

    def _freed(self, pool: HostPool) -> None:
        """A slot of ``pool`` and of the total came free: hand it to whoever waits."""
        if self._closed:
            return
        if pool.waiters and not pool.queued:
            # Its waiters waited for its own limit; now they wait for the total, in turn.
            pool.queued = True
            self._ready.append(pool)
        if self._ready:
            self._pump()

    def _pump(self) -> None:
        """Grant free total slots to waiting pools, round robin, first waiter first."""
        ready = self._ready
        while ready:
            pool = ready[0]
            waiters = pool.waiters
            while waiters and waiters[0].done():
                waiters.popleft()  # timed out or cancelled, its removal still pending
            if not waiters or pool.open >= self._limit:
                ready.popleft()  # it waits for its own limit again, or for nothing
                pool.queued = False
                continue
            if self._total >= self._max and not self._evict_lru():
                return
            ready.popleft()
            pool.open += 1
            self._total += 1
            waiters.popleft().set_result(None)
            if waiters and pool.open < self._limit:
                ready.append(pool)  # round robin: its next waiter after the others
            else:
                pool.queued = False

    def _pass_on(self, pool: HostPool, handed: Conn | None) -> None:
        """A waiter was handed a connection or a slot but will not use it."""
        if handed is not None:
            self._release(pool, handed)
        elif not self._closed:
            pool.open -= 1
            self._total -= 1
            self._freed(pool)

    def _evict_lru(self) -> bool:
        """Close the least recently used idle connection (of any origin) to free a slot."""
        if not self._lru:
            return False
        conn, _ = self._lru.popitem(last=False)
        _unidle(conn.pool, conn)
        conn.abort()
        if conn.counted:  # no _freed(): the caller takes this slot
            conn.counted = False
            conn.pool.open -= 1
            self._total -= 1
        return True

    def _expire(self, pool: HostPool, fut: asyncio.Future[Conn | None]) -> None:
        if fut.done():
            return
        if pool.open >= self._limit:
            fut.set_exception(PoolTimeoutError(pool.open, self._limit, per_origin=True))
        else:
            fut.set_exception(PoolTimeoutError(self._total, self._max, per_origin=False))

    def _sweep(self) -> None:
        """Close connections idle past the bound, and forget hosts nobody checks now."""
        self._sweeper = None
        if self._closed:
            return
        oldest_ok = self.loop.time() - self._idle_max
        lru = self._lru
        while lru:
            conn = next(iter(lru))
            if conn.idle_since >= oldest_ok:
                break
            del lru[conn]
            pool = conn.pool
            _unidle(pool, conn)
            conn.abort()
            self._drop(pool, conn)
        for key, pool in list(self._pools.items()):
            if not pool.open and not pool.idle and not pool.waiters and not pool.queued:
                del self._pools[key]
        if lru:
            self._sweeper = self.loop.call_later(self._idle_max / 2, self._sweep)

    def idle_lost(self, pool: HostPool, conn: Conn) -> None:
        """An idle connection was closed by its peer: forget it and free its slot."""
        if self._lru.pop(conn, False) is None:
            _unidle(pool, conn)
        self._drop(pool, conn)


def _usable(conn: Conn) -> bool:
    transport = conn.transport
    return not conn.closed and transport is not None and not transport.is_closing()


def _unidle(pool: HostPool, conn: Conn) -> None:
    """Take ``conn`` out of its pool's idle deque (its oldest, when the LRU picks it)."""
    idle = pool.idle
    if idle and idle[0] is conn:
        idle.popleft()
    else:
        with contextlib.suppress(ValueError):
            idle.remove(conn)
