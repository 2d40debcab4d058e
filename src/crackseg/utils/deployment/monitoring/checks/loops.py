"""A checker's fast clients, one per event loop it is used on, and their release.

Connection pools belong to a loop, so one checker serves its synchronous facade (a
private loop thread) and any number of running loops, each with its own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from crackseg.utils.deployment.monitoring.checks._fastclient import FastClient

__all__ = ["CLOSE_WAIT_S", "LoopClients"]

#: How long a loop is given to close its connections before they are abandoned.
CLOSE_WAIT_S = 5.0


class LoopClients:
    """Per event loop, a :class:`FastClient` with the checker's pool bounds. Thread-safe."""

    def __init__(self, pool_size: int, max_connections: int) -> None:
        self.pool_size = pool_size
        self.max_connections = max_connections
        self.clients: dict[asyncio.AbstractEventLoop, FastClient] = {}
        self._lock = threading.Lock()

    def get(self, loop: asyncio.AbstractEventLoop) -> FastClient | None:
        """The loop's client if it has one (no lock: a dict read, on the hot path)."""
        return self.clients.get(loop)

    def for_loop(self, loop: asyncio.AbstractEventLoop) -> FastClient:
        """The loop's client, made on first use; clients of closed loops are dropped."""
        with self._lock:
            fast = self.clients.get(loop)
            if fast is None:
                for old_loop in [lp for lp in self.clients if lp.is_closed()]:
                    _abandon(self.clients.pop(old_loop))
                fast = self.clients[loop] = FastClient(
                    loop, self.pool_size, max_connections=self.max_connections
                )
            return fast

    def pop(self, loop: asyncio.AbstractEventLoop) -> FastClient | None:
        with self._lock:
            return self.clients.pop(loop, None)

    def in_use(self) -> bool:
        """Whether any loop has a client."""
        with self._lock:
            return bool(self.clients)

    def close_all(self) -> None:
        """Close every loop's client, each on its own loop where that loop still runs."""
        with self._lock:
            clients = list(self.clients.values())
            self.clients.clear()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for fast in clients:
            _close(fast, current)


async def _aclose(fast: FastClient) -> None:
    """Close ``fast`` on its own loop."""
    fast.close()


def _close(fast: FastClient, current: asyncio.AbstractEventLoop | None) -> None:
    loop = fast.loop
    if loop.is_closed():
        _abandon(fast)
    elif loop is current:
        fast.close()  # close() called synchronously on its running loop
    elif loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(_aclose(fast), loop).result(CLOSE_WAIT_S)
        except Exception:
            _abandon(fast)
    else:
        try:
            loop.run_until_complete(_aclose(fast))
        except Exception:
            _abandon(fast)


def _abandon(fast: FastClient) -> None:
    """Best-effort release when the loop can no longer run coroutines."""
    with contextlib.suppress(Exception):
        fast.abandon()
