"""One keep-alive HTTP/1.1 connection of :mod:`._fastclient`, plain or TLS alike.

The response head is bounded as aiohttp bounds it (a line, a count, a total) before the
parser can buffer it, and a gzip/deflate body is decoded, bounded, before anyone reads
its status: a hostile or odd server gets the same answer on ``http://`` and ``https://``.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from typing import Any, Protocol, cast

import httptools

from crackseg.utils.deployment.monitoring.checks._deadlines import Deadlines
from crackseg.utils.deployment.monitoring.checks._response import FastResponse, WithHeaders
from crackseg.utils.deployment.monitoring.checks.tls import earliest_expiry

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "MAX_LINE_BYTES",
    "ClientClosedError",
    "Conn",
    "ConnOwner",
    "ConnectionClosedError",
    "FastResponse",
    "HostPool",
    "InvalidResponseError",
    "PoolTimeoutError",
    "StalledError",
    "Waiter",
    "WithHeaders",
]

#: Longest status or header line (aiohttp's max_line_size / max_field_size).
MAX_LINE_BYTES = 8190
#: Most header fields in one response (Python's http.client allows as many).
MAX_HEADERS = 100
#: Largest response head: status line, headers and any interim (1xx) responses.
MAX_HEAD_BYTES = 64 * 1024


#: The response headers a check reads (one dict lookup for the others, on the hot path).
_WANTED = {
    b"content-type": 1,
    b"content-length": 2,
    b"location": 3,
    b"content-encoding": 4,
    b"transfer-encoding": 5,
}


class InvalidResponseError(Exception):
    """The peer did not answer with valid, bounded HTTP/1.x."""


class ConnectionClosedError(ConnectionError):
    """The connection closed (EOF or reset) before any byte of a response arrived."""


class ClientClosedError(ConnectionError):
    """The client was closed while the request was pending."""


class PoolTimeoutError(TimeoutError):
    """The deadline passed while the request waited for a connection slot."""

    def __init__(self, open_now: int, limit: int, per_origin: bool) -> None:
        self.open = open_now
        self.limit = limit
        self.per_origin = per_origin
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """What the request waited for, e.g. "waiting for a connection: 20 open, limit 20"."""
        if self.per_origin:
            return (
                f"waiting for a connection: {self.open} open to this origin, "
                f"per-origin limit {self.limit}"
            )
        return f"waiting for a connection: {self.open} open, limit {self.limit}"


class StalledError(Exception):
    """No response byte by the stall point of a reused connection; the request goes on."""


class _Decoder:
    """gzip or deflate (zlib-wrapped or raw, as servers send both) with bounded output."""

    __slots__ = ("_d", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._d: Any = None

    def feed(self, data: bytes, room: int) -> bytes:
        """Up to ``room + 1`` decoded bytes of ``data`` (one more says "truncated")."""
        if self._d is None:
            if self.name == "deflate":
                wbits = zlib.MAX_WBITS if data[:1] and (data[0] & 0x0F) == 8 else -zlib.MAX_WBITS
            else:
                wbits = 16 + zlib.MAX_WBITS
            self._d = zlib.decompressobj(wbits)
        try:
            return cast(bytes, self._d.decompress(data, room + 1))
        except zlib.error as exc:
            raise InvalidResponseError(f"{self.name} body cannot be decoded: {exc}") from None


class Waiter(Protocol):
    """What a connection answers into: an asyncio future, or a stand-in for one."""

    def done(self) -> bool: ...

    def set_result(self, result: FastResponse, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class ConnOwner(Protocol):
    """What a connection needs of the client that opened it (``FastClient``), declared
    here so that a connection does not import its client."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def deadlines(self) -> Deadlines: ...

    @property
    def conns(self) -> set[Conn]:
        """Every open connection: a closed one removes itself."""

    def idle_lost(self, pool: HostPool, conn: Conn) -> None:
        """An idle connection (no request on it) was closed by its server."""


class HostPool:
    """Connections to one (host, port, scheme): beside :class:`Conn`, which names its pool;
    their slots are counted by ``_slots.Slots``."""

    __slots__ = ("idle", "open", "queued", "waiters")

    def __init__(self) -> None:
        self.idle: deque[Conn] = deque()  # oldest left, newest right
        self.open = 0
        # Each waiter is handed a Conn to reuse, or None: a slot counted for it.
        self.waiters: deque[asyncio.Future[Conn | None]] = deque()
        self.queued = False  # in Slots.ready (maybe with no waiter left: skipped)


class Conn(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time."""

    def __init__(self, client: ConnOwner, pool: HostPool) -> None:
        self._client = client
        self.pool = pool
        self._loop = client.loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = True  # holds one of the pool's connection slots
        self.racing = False  # silent, raced by a fresh try that took its origin slot
        self.requests = 0
        self.reusable = False
        self.idle_since = 0.0
        self.waiter: Waiter | None = None
        self._timer: int | None = None  # a token of the client's Deadlines
        self._deadlines = client.deadlines
        self._deadline = 0.0
        self._stall_armed = False  # its timer is the stall mark, not the deadline
        self._error: InvalidResponseError | None = None
        self._got_bytes = False
        self._head_bytes = 0  # in reads that ended inside the head
        self._line_bytes = 0  # of the head line still open at the end of the last read
        self._head_parsed = 0  # of the lines the parser completed (all responses)
        self._head_lines = 0  # newlines in reads that ended inside the head
        # A head in one read of <= MAX_LINE_BYTES and <= MAX_HEADERS lines is within
        # every bound: the per-header accounting runs only for the others (hot path).
        self._strict = False
        self._body: list[bytes] = []
        self.cert_not_after: float | None = None  # the chain's, read once per connection
        self._head_only = False  # answering a HEAD: no body follows the head
        self._all: dict[str, str] | None = None  # every header, when the request asked
        self._reset(0)

    def _reset(self, max_body: int) -> None:
        self._max_body = max_body
        self._headers_done = False
        self._has_length = False
        self._headers = 0
        self._content_type: str | None = None
        self._location: str | None = None
        self._decoder: _Decoder | None = None
        if self._all is not None:
            self._all = {}
        # Emptied, not replaced: a list per request lived on until the next one (10 s), long
        # enough to reach the GC's oldest generation.
        self._body.clear()
        self._body_len = 0
        self._truncated = False

    # --- used by FastClient -------------------------------------------------------------

    def request(
        self, data: bytes, max_body: int, deadline: float, stall_at: float | None = None
    ) -> asyncio.Future[FastResponse]:
        """Send ``data``; the future fails with :class:`StalledError` if no byte arrived by
        ``stall_at`` (the request then goes on, on :attr:`waiter`), and with TimeoutError
        at ``deadline``."""
        waiter = self._loop.create_future()
        self.request_into(waiter, data, max_body, deadline, stall_at)
        return waiter

    def request_into(
        self,
        waiter: Waiter,
        data: bytes,
        max_body: int,
        deadline: float,
        stall_at: float | None = None,
    ) -> None:
        """:meth:`request` answering into ``waiter``: a future, or a reusable stand-in for
        one (``FastClient.start``), so a check in flight allocates nothing the GC tracks."""
        self._all = {} if type(max_body) is WithHeaders else None
        self._head_only = data.startswith(b"HEAD ")
        self._reset(max_body)
        self._got_bytes = False
        self._error = None
        self._head_bytes = self._line_bytes = self._head_parsed = self._head_lines = 0
        self._strict = False
        self.requests += 1
        self.reusable = False
        self.waiter = waiter
        self._deadline = deadline
        if stall_at is not None and stall_at < deadline:
            self._stall_armed, when = True, stall_at
        else:
            self._stall_armed, when = False, deadline
        self._timer = self._deadlines.add(when, self)
        assert self.transport is not None
        self.transport.write(data)

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
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.cert_not_after = earliest_expiry(ssl_object)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            # Bytes nobody asked for: the stream is out of step, never reuse it.
            self.abort()
            return
        self._got_bytes = True
        if (
            not self._headers_done
            and not self._strict
            and (self._head_bytes or len(data) > MAX_LINE_BYTES or data.count(b"\n") > MAX_HEADERS)
        ):
            self._strict = True
            self._headers = max(0, self._head_lines - 1)  # lines of earlier reads
            self._head_parsed = self._head_bytes
            if (
                not self._head_bytes
                and len(data) > MAX_LINE_BYTES
                and data.find(b"\n", 0, MAX_LINE_BYTES + 2) < 0
            ):
                self.abort(_line_too_long())  # the status line
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.abort(InvalidResponseError("unexpected protocol upgrade"))
            return
        except httptools.HttpParserError as exc:
            self.abort(self._error or InvalidResponseError(str(exc) or type(exc).__name__))
            return
        if not self._headers_done and self.waiter is not None:
            # The whole chunk is head: bound it before the parser buffers more of it.
            self._head_bytes += len(data)
            self._head_lines += data.count(b"\n")
            nl = data.rfind(b"\n")
            self._line_bytes = self._line_bytes + len(data) if nl < 0 else len(data) - nl - 1
            if self._line_bytes > MAX_LINE_BYTES:
                self.abort(_line_too_long())
            elif self._head_bytes > MAX_HEAD_BYTES:
                self.abort(_head_too_long())
            return
        if self._truncated and self.waiter is not None:
            self._finish(keep=False)
            self.abort()
        elif self.closed and self.waiter is None:
            self.abort()

    def eof_received(self) -> bool:
        self.closed = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client.conns.discard(self)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self._headers_done and not self._has_length:
                self._finish(keep=False)  # body delimited by connection close
            elif not self._got_bytes:
                self._fail(ConnectionClosedError("connection closed before a response"))
            else:
                self._fail(InvalidResponseError("connection closed mid-response"))
        elif waiter is None:
            self._client.idle_lost(self.pool, self)

    # --- httptools callbacks (an exception raised here comes back from feed_data) -------

    def on_message_begin(self) -> None:
        if self.waiter is None:
            # A second response in one read with no request for it.
            self.closed = True
        self._reset(self._max_body)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._strict:
            self._account(len(name) + len(value) + 2)
        if self._all is not None and len(self._all) < MAX_HEADERS:
            self._all[name.decode("latin-1").lower()] = value.decode("latin-1")
        kind = _WANTED.get(name.lower())
        if kind is None:
            return
        if kind == 1:
            self._content_type = value.decode("latin-1")
        elif kind == 2:
            self._has_length = True
        elif kind == 3:
            self._location = value.decode("latin-1")
        elif kind == 4:
            enc = value.strip().lower()
            if enc in (b"gzip", b"x-gzip", b"deflate"):
                self._decoder = _Decoder("deflate" if enc == b"deflate" else "gzip")
        elif b"chunked" in value.lower():
            self._has_length = True

    def _account(self, size: int) -> None:
        self._headers += 1
        if self._headers > MAX_HEADERS:
            self._error = InvalidResponseError(f"more than {MAX_HEADERS} response headers")
        elif size > MAX_LINE_BYTES:
            self._error = _line_too_long()
        else:
            self._head_parsed += size + 2
            if self._head_parsed > MAX_HEAD_BYTES:
                self._error = _head_too_long()
        if self._error is not None:
            raise self._error

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._line_bytes = 0
        if self._head_only and self.waiter is not None:
            status = self._parser.get_status_code()
            if status >= 200 or status == 101:
                # The parser would wait for the Content-Length a HEAD answer announces but
                # never sends: answer now, and never reuse a stream the parser misreads.
                self._finish(keep=False)
                self.closed = True

    def on_body(self, body: bytes) -> None:
        if self._truncated:
            return
        room = self._max_body - self._body_len
        if self._decoder is not None:
            try:
                body = self._decoder.feed(body, room)
            except InvalidResponseError as exc:
                self._error = exc
                raise
        if len(body) > room:
            body = body[:room]
            self._truncated = True
        self._body.append(body)
        self._body_len += len(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._headers_done = False  # interim response: the real head follows, bounded
            return
        if self.waiter is not None:
            self._finish(keep=self._parser.should_keep_alive() and not self.closed)

    # --- internals ----------------------------------------------------------------------

    def _finish(self, keep: bool) -> None:
        waiter = self.waiter
        self.waiter = None
        if self._timer is not None:
            self._deadlines.cancel(self._timer)
            self._timer = None
        self.reusable = keep
        if waiter is not None and not waiter.done():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            resp = FastResponse(
                self._parser.get_status_code(),
                self._content_type,
                self._location,
                body,
                self._truncated,
                # Here, not when a callback handles it: answers that arrive together
                # are handled one after another, and the last would be timed late.
                time.monotonic(),
            )
            resp.cert_not_after = self.cert_not_after
            if self._all is not None:
                resp.headers, self._all = self._all, None
            waiter.set_result(resp)

    def _fail(self, exc: BaseException | None) -> None:
        waiter = self.waiter
        self.waiter = None
        self.reusable = False
        if self._timer is not None:
            self._deadlines.cancel(self._timer)
            self._timer = None
        if exc is not None and waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def deadline_passed(self) -> None:
        if self._stall_armed:
            self._on_stall()
        else:
            self._on_timeout()

    def _on_stall(self) -> None:
        self._stall_armed = False
        self._timer = self._deadlines.add(self._deadline, self)
        waiter = self.waiter
        if self._got_bytes or waiter is None or waiter.done():
            return
        # Tell the client (it starts a fresh connection) but keep listening: a slow
        # server may still answer here first.
        self.waiter = self._loop.create_future()
        waiter.set_exception(StalledError())

    def _on_timeout(self) -> None:
        self._timer = None
        self.abort(TimeoutError())


def _line_too_long() -> InvalidResponseError:
    return InvalidResponseError(f"response header line longer than {MAX_LINE_BYTES} bytes")


def _head_too_long() -> InvalidResponseError:
    return InvalidResponseError(f"response headers longer than {MAX_HEAD_BYTES} bytes in total")
