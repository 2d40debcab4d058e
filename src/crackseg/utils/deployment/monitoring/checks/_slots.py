"""Connection slots of :mod:`._fastclient`: per origin, in all, and who gets a free one.

A slot is counted from the moment a connection is wanted (connecting) until its socket
is given up; idle connections hold theirs. Rules (the client's contract says why):

* per origin at most ``limit`` slots, in all at most ``total_max``;
* a request with no idle connection of its own origin and the total reached closes
  the least recently used idle connection (:attr:`Slots.lru`, of any origin) and takes
  its slot, or waits;
* what comes free is handed over at once, never left for a newcomer to take: a released
  connection to its origin's first waiter, a freed slot to the origin next in turn
  (:attr:`Slots.ready`, round robin). A connection moves to another origin only to give
  an origin holding none one, or to even out the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import ssl
from collections import OrderedDict, deque

from crackseg.utils.deployment.monitoring.checks._fastconn import (
    ClientClosedError,
    Conn,
    HostPool,
    PoolTimeoutError,
)

__all__ = ["HostPool", "Key", "Slots", "default_max_connections"]

#: Bounds of the default total: never below a usable pool, never more sockets than any
#: monitor needs for health checks even when the fd limit is unlimited.
_MIN_DEFAULT_CONNECTIONS = 8
_MAX_DEFAULT_CONNECTIONS = 16_384

#: A pool: host, port and the TLS context (None: plain), so checks with other TLS settings
#: (a deployment's CA or client certificate) never share a connection.
Key = tuple[str, int, "ssl.SSLContext | None"]


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


class Slots:
    """The slot books of one client (one event loop)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, limit: int, total_max: int, idle_max: float
    ) -> None:
        self.loop = loop
        self.limit = limit
        self.total_max = total_max
        self.idle_max = idle_max
        self.pools: dict[Key, HostPool] = {}
        self.total = 0  # slots counted over every pool: in use, idle and connecting
        self.lru: OrderedDict[Conn, None] = OrderedDict()  # every idle conn, oldest first
        self.ready: deque[HostPool] = deque()  # pools with room whose waiters need a slot
        self.closed = False
        self._sweeper: asyncio.TimerHandle | None = None

    # --- taking ---------------------------------------------------------------------------

    def reserve(self, pool: HostPool) -> bool:
        """Count a slot for a new connection to ``pool`` now, if that is fair and possible."""
        if (
            pool.open < self.limit
            and not pool.waiters
            and (self.total < self.total_max or self.evict_lru())
        ):
            pool.open += 1
            self.total += 1
            return True
        return False

    def reserve_total(self) -> bool:
        """Count one more socket in the total only (a race's second try), if possible."""
        if self.total < self.total_max or self.evict_lru():
            self.total += 1
            return True
        return False

    async def wait(self, pool: HostPool, deadline: float) -> Conn | None:
        """Wait in line: a connection handed over to reuse, or None for a slot counted."""
        fut: asyncio.Future[Conn | None] = self.loop.create_future()
        pool.waiters.append(fut)
        if pool.open < self.limit and not pool.queued:
            pool.queued = True  # it waits for the total, not for its own limit
            self.ready.append(pool)
        timer = self.loop.call_at(deadline, self._expire, pool, fut)
        try:
            return await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.pass_on(pool, fut.result())  # handed over, then cancelled
            else:
                with contextlib.suppress(ValueError):
                    pool.waiters.remove(fut)
            raise
        finally:
            timer.cancel()

    def evict_lru(self) -> bool:
        """Close the least recently used idle connection (of any origin) to free a slot
        for the caller to take (so nobody else is handed it)."""
        if not self.lru:
            return False
        conn, _ = self.lru.popitem(last=False)
        _unidle(conn.pool, conn)
        conn.abort()
        if conn.counted:
            conn.counted = False
            conn.pool.open -= 1
            self.total -= 1
        return True

    # --- giving back ----------------------------------------------------------------------

    def release(self, pool: HostPool, conn: Conn) -> None:
        """A request is done with ``conn``: hand it on, keep it idle, or close it."""
        if not (conn.reusable and not conn.closed and not self.closed and conn.counted):
            conn.abort()
            self.drop(pool, conn)
            return
        if self.ready and not self._take_turn(pool):
            # Origins wait for the total and the turn is another's: this connection
            # makes room for it (it would be the least recently used idle one).
            conn.abort()
            self.drop(pool, conn)
            return
        waiters = pool.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)  # reused at once by the first in line
                return
        conn.idle_since = self.loop.time()
        pool.idle.append(conn)
        self.lru[conn] = None
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.idle_max, self._sweep)

    def drop(self, pool: HostPool, conn: Conn) -> None:
        """``conn`` (aborted or lost) gives up its slot."""
        if conn.counted:
            conn.counted = False
            if not conn.racing:  # a racing one's origin slot went to its fresh try
                pool.open -= 1
            self.total -= 1
            self._freed(pool)

    def give_back(self, pool: HostPool) -> None:
        """A slot counted for a connection that was never made comes free."""
        if not self.closed:
            pool.open -= 1
            self.total -= 1
            self._freed(pool)

    def pass_on(self, pool: HostPool, handed: Conn | None) -> None:
        """A waiter was handed a connection or a slot but will not use it."""
        if handed is not None:
            self.release(pool, handed)
        else:
            self.give_back(pool)

    def idle_lost(self, pool: HostPool, conn: Conn) -> None:
        """An idle connection was closed by its peer: forget it and free its slot."""
        if self.lru.pop(conn, False) is None:
            _unidle(pool, conn)
        self.drop(pool, conn)

    def close(self) -> None:
        """Fail every waiter and forget every pool (the client aborts the sockets)."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pool in self.pools.values():
            while pool.waiters:
                fut = pool.waiters.popleft()
                if not fut.done():
                    fut.set_exception(ClientClosedError("client closed"))
            pool.idle.clear()
        self.forget()

    def forget(self) -> None:
        """Drop the books without touching a loop (it may be closed already)."""
        self.closed = True
        self._sweeper = None
        self.pools.clear()
        self.lru.clear()
        self.ready.clear()

    # --- internals ------------------------------------------------------------------------

    def _take_turn(self, pool: HostPool) -> bool:
        """With origins waiting for the total: may ``pool`` keep its released connection?

        Its waiters join the round robin. It keeps the connection for its first waiter
        when it is next in turn, or when the origin next in turn already holds
        connections and not fewer than this one less one: connections move between
        origins only to give one to an origin holding none or to even out the counts,
        so a saturated pool churns no more than fairness needs.
        """
        ready = self.ready
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

    def _freed(self, pool: HostPool) -> None:
        """A slot of ``pool`` and of the total came free: hand it to whoever waits."""
        if self.closed:
            return
        if pool.waiters and not pool.queued:
            # Its waiters waited for its own limit; now they wait for the total, in turn.
            pool.queued = True
            self.ready.append(pool)
        if self.ready:
            self._pump()

    def _pump(self) -> None:
        """Grant free total slots to waiting pools, round robin, first waiter first."""
        ready = self.ready
        while ready:
            pool = ready[0]
            waiters = pool.waiters
            while waiters and waiters[0].done():
                waiters.popleft()  # timed out or cancelled, its removal still pending
            if not waiters or pool.open >= self.limit:
                ready.popleft()  # it waits for its own limit again, or for nothing
                pool.queued = False
                continue
            if self.total >= self.total_max and not self.evict_lru():
                return
            ready.popleft()
            pool.open += 1
            self.total += 1
            waiters.popleft().set_result(None)
            if waiters and pool.open < self.limit:
                ready.append(pool)  # round robin: its next waiter after the others
            else:
                pool.queued = False

    def _expire(self, pool: HostPool, fut: asyncio.Future[Conn | None]) -> None:
        if fut.done():
            return
        if pool.open >= self.limit:
            fut.set_exception(PoolTimeoutError(pool.open, self.limit, per_origin=True))
        else:
            fut.set_exception(PoolTimeoutError(self.total, self.total_max, per_origin=False))

    def _sweep(self) -> None:
        """Close connections idle past the bound, and forget hosts nobody checks now."""
        self._sweeper = None
        if self.closed:
            return
        oldest_ok = self.loop.time() - self.idle_max
        lru = self.lru
        while lru:
            conn = next(iter(lru))
            if conn.idle_since >= oldest_ok:
                break
            del lru[conn]
            pool = conn.pool
            _unidle(pool, conn)
            conn.abort()
            self.drop(pool, conn)
        for key, pool in list(self.pools.items()):
            if not pool.open and not pool.idle and not pool.waiters and not pool.queued:
                del self.pools[key]
        if lru:
            self._sweeper = self.loop.call_later(self.idle_max / 2, self._sweep)


def _unidle(pool: HostPool, conn: Conn) -> None:
    """Take ``conn`` out of its pool's idle deque (its oldest, when the LRU picks it)."""
    idle = pool.idle
    if idle and idle[0] is conn:
        idle.popleft()
    else:
        with contextlib.suppress(ValueError):
            idle.remove(conn)
