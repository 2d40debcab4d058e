"""One overall deadline for a channel's exchange with its receiver, whatever the peer does.

A socket timeout bounds each read, not the exchange: a receiver dripping its status line,
its headers, endless ``100 Continue`` answers or ``250-`` SMTP lines one byte at a time
never lets a read time out. :class:`SendDeadline` watches the sockets of one send and,
when its time is up, shuts them down, so the blocked read returns at once and the
channel's worker moves on; :attr:`SendDeadline.expired` then tells the caller it was a
timeout, whatever error the cut connection raised.

>>> with SendDeadline(20.0) as deadline:  # doctest: +SKIP
...     sock = socket.create_connection(("127.0.0.1", 25), timeout=10.0)
...     deadline.watch(sock)
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["SendDeadline"]


class SendDeadline:
    """Shuts down every watched socket ``seconds`` after it was made (a context manager)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._done = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.name = "send-deadline"

    def __enter__(self) -> SendDeadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def watch(self, sock: socket.socket) -> None:
        """Cut ``sock`` at the deadline (at once if it has passed)."""
        with self._lock:
            if self.expired:
                _cut(sock)
            elif not self._done:
                self._sockets.append(sock)

    def cancel(self) -> None:
        """The exchange is over: cut nothing from now on."""
        with self._lock:
            self._done = True
            self._sockets.clear()
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _cut(sock)


def _cut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: it wakes the blocked reader
    # without touching the TLS state that thread is using. A closed or detached socket
    # has no descriptor any more (fileno -1), so a reused descriptor is never hit.
    with contextlib.suppress(OSError):
        socket.SocketType.shutdown(sock, socket.SHUT_RDWR)
