"""Waiting on events in tests: poll with a deadline, never a fixed sleep; and free ports."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any


def poll(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Call ``fn`` until it returns something truthy and return that; at the deadline return
    its last (falsy) value, so ``assert poll(...)`` reads as the condition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    return fn()


def wait_until(
    fn: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """Like :func:`poll`, but an exception from ``fn`` (a server not answering yet) counts as
    "not yet", and the deadline raises AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = fn()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")


async def wait_until_async(
    fn: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.005
) -> Any:
    """:func:`wait_until` for a coroutine: polls ``fn`` between turns of the running loop (what
    it waits for happens on that loop: a few callbacks, however long a loaded machine spreads
    them over), and raises AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now (for programs that cannot take port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
