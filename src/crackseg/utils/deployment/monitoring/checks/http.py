"""The default HTTP health checker: fast keep-alive GETs, honest failure messages.

Plain ``http://`` checks go through :mod:`._fastclient` (asyncio protocol + httptools,
~5x cheaper than aiohttp per check); ``https://`` goes through aiohttp, one
``ClientSession`` per event loop. Connection pools are per event loop, so one checker
serves its synchronous facade (a private loop thread) and any number of running loops
(the monitor engine calls :meth:`DefaultHealthChecker.check_health_async` on its own).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import socket
import ssl
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin

import aiohttp

from crackseg.utils.deployment.errors import ConfigError, require_positive
from crackseg.utils.deployment.eventloop import new_event_loop
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks._fastclient import (
    USER_AGENT,
    ClientClosedError,
    ConnectionClosedError,
    FastClient,
    InvalidResponseError,
    Target,
    parse_target,
)
from crackseg.utils.deployment.monitoring.checks.base import (
    MAX_BODY_BYTES,
    HealthChecker,
    classify_response,
    failure,
)

__all__ = ["DefaultHealthChecker"]

_T = TypeVar("_T")
_MAX_CACHED_TARGETS = 20_000  # ~400 B each; more distinct URLs than this re-parse
_CLOSE_WAIT_S = 5.0


@dataclass(slots=True)
class _Answer:
    status: int
    content_type: str | None
    location: str | None
    body: bytes
    truncated: bool


class _LoopState:
    """Everything a checker holds for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool_size: int) -> None:
        self.loop = loop
        self.fast = FastClient(loop, pool_size)
        self.session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        self.fast.close()
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()

    def abandon(self) -> None:
        """Best-effort release when the loop can no longer run coroutines."""
        with contextlib.suppress(Exception):
            self.fast.abandon()
        self.session = None


class DefaultHealthChecker(HealthChecker):
    """HTTP(S) GET health checks with a whole-check timeout and keep-alive pools.

    2xx is healthy unless a JSON body says ``"status": "degraded"``/``"unhealthy"``; a
    non-2xx answer whose body says degraded reads as degraded; other answers and every
    transport failure are unhealthy with an ``error_message`` naming the cause
    (``HTTP 500``, ``timeout after 10s``, ``connection refused``, ``DNS ...``,
    ``TLS ...``, ``invalid HTTP response ...``). ``details`` carries ``http_status`` when
    an answer came, and ``error_type`` when none did. Redirects are reported, not
    followed, unless ``follow_redirects=True``. Bodies are read up to ``max_body_bytes``.
    The timeout bounds the whole check: connect, send, headers and body (and redirects).

    The synchronous methods run on a private event-loop thread (uvloop when available),
    started lazily and stopped by :meth:`close`; they may be called from any thread,
    including one whose own asyncio loop is running, but not from that private thread.
    The async twins run on the caller's loop, with a connection pool per loop. Call
    :meth:`release_loop` (or :meth:`aclose`) on each loop you used before it ends, or
    :meth:`close` from outside; both are safe to call twice, and the checker may be used
    again afterwards (resources come back lazily).

    >>> checker = DefaultHealthChecker(headers={"X-Probe": "1"})
    >>> checker.check_health("http://127.0.0.1:9/health", timeout=2).error_message
    'connection refused'
    >>> checker.close()
    """

    def __init__(
        self,
        *,
        follow_redirects: bool = False,
        max_redirects: int = 5,
        max_body_bytes: int = MAX_BODY_BYTES,
        headers: dict[str, str] | None = None,
        verify_tls: bool = True,
        pool_size_per_host: int = 100,
    ) -> None:
        require_positive("max_redirects", max_redirects, allow_zero=True)
        require_positive("max_body_bytes", max_body_bytes)
        require_positive("pool_size_per_host", pool_size_per_host)
        self.follow_redirects = follow_redirects
        self.max_redirects = int(max_redirects)
        self.max_body_bytes = int(max_body_bytes)
        self.verify_tls = verify_tls
        self.pool_size_per_host = int(pool_size_per_host)
        self.headers: dict[str, str] = dict(headers or {})
        for name, value in self.headers.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise ConfigError(f"headers[{name!r}]", "must not contain CR, LF or NUL")
        self._targets: dict[str, Target | str] = {}
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_closes: set[asyncio.Task[None]] = set()

    # --- public API -------------------------------------------------------------------

    def check_health(self, url: str, timeout: float = 10) -> HealthCheckResult:
        """Check ``url`` once (blocking); the result arrives within ``timeout`` seconds."""
        require_positive("timeout", timeout)
        return self._run_sync(self.check_health_async(url, timeout), timeout)

    def wait_for_healthy(
        self, url: str, max_wait: float = 300, interval: float = 5, *, timeout: float = 10
    ) -> bool:
        """Poll ``url`` every ``interval`` s; True once healthy, False at ``max_wait``.

        Each check's ``timeout`` is clipped to the time left, so this never overruns.
        """
        require_positive("max_wait", max_wait, allow_zero=True)
        require_positive("interval", interval)
        coro = self.wait_for_healthy_async(url, max_wait, interval, timeout=timeout)
        return self._run_sync(coro, max_wait)

    async def check_health_async(self, url: str, timeout: float = 10) -> HealthCheckResult:
        """Check ``url`` once on the running loop; never raises for a failed check."""
        require_positive("timeout", timeout)
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._state_for(loop)
        start = time.monotonic()
        deadline = loop.time() + timeout
        target = self._target(url)
        hops = 0
        visited: set[str] | None = None
        while True:
            if isinstance(target, str):
                return failure(target, _ms(start), error_type="invalid_url")
            try:
                if target.https:
                    answer = await self._get_aiohttp(state, target, deadline)
                else:
                    resp = await state.fast.get(
                        target.host, target.port, target.request, self.max_body_bytes, deadline
                    )
                    answer = _Answer(
                        resp.status, resp.content_type, resp.location, resp.body, resp.truncated
                    )
            except Exception as exc:
                message, kind = _describe(exc, timeout, target.host)
                details: dict[str, Any] = {"error_type": kind}
                if hops:
                    details["redirects"] = hops
                return failure(message, _ms(start), **details)
            status = answer.status
            if 300 <= status < 400 and status != 304 and answer.location is not None:
                location = answer.location
                if not self.follow_redirects:
                    return failure(
                        f"HTTP {status} redirect to {location} (redirects not followed)",
                        _ms(start),
                        http_status=status,
                        location=location,
                        error_type="redirect",
                    )
                next_url = urljoin(target.url, location)
                if visited is None:
                    visited = {target.url}
                if next_url in visited:
                    return failure(
                        f"redirect loop: {location} was already visited",
                        _ms(start),
                        http_status=status,
                        location=location,
                        redirects=hops,
                        error_type="redirect_loop",
                    )
                hops += 1
                if hops > self.max_redirects:
                    return failure(
                        f"too many redirects (more than {self.max_redirects})",
                        _ms(start),
                        http_status=status,
                        location=location,
                        redirects=hops - 1,
                        error_type="too_many_redirects",
                    )
                visited.add(next_url)
                target = self._target(next_url)
                continue
            result = classify_response(status, answer.body, _ms(start), answer.content_type)
            if answer.truncated:
                result.details["body_truncated"] = True
            if hops:
                result.details["redirects"] = hops
            return result

    async def wait_for_healthy_async(
        self, url: str, max_wait: float = 300, interval: float = 5, *, timeout: float = 10
    ) -> bool:
        """Async twin of :meth:`wait_for_healthy`."""
        require_positive("max_wait", max_wait, allow_zero=True)
        require_positive("interval", interval)
        require_positive("timeout", timeout)
        deadline = time.monotonic() + max_wait
        while True:
            started = time.monotonic()
            remaining = deadline - started
            if remaining <= 0:
                return False
            result = await self.check_health_async(url, min(timeout, remaining))
            if result.success:
                return True
            next_poll = started + interval
            now = time.monotonic()
            if next_poll >= deadline:
                await asyncio.sleep(max(0.0, deadline - now))
                return False
            await asyncio.sleep(max(0.0, next_poll - now))

    def close(self) -> None:
        """Close every loop's connections and stop the private loop thread."""
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("close() cannot run on the checker's own loop; use aclose()")
        with self._lock:
            states = list(self._states.values())
            self._states.clear()
            thread, loop = self._thread, self._loop
            self._thread = self._loop = None
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for state in states:
            self._close_state(state, current)
        if thread is not None and loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=_CLOSE_WAIT_S * 2)

    async def aclose(self) -> None:
        """Close this loop's connections here, then everything else (see :meth:`close`)."""
        await self.release_loop()
        with self._lock:
            others = bool(self._states) or self._thread is not None
        if others:
            await asyncio.to_thread(self.close)

    async def release_loop(self) -> None:
        """Close only the running loop's connections; call it before that loop ends.

        The checker stays usable from other loops and from the synchronous facade.
        """
        with self._lock:
            state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.aclose()

    # --- sync facade ------------------------------------------------------------------

    def _run_sync(self, coro: Coroutine[Any, Any, _T], budget: float) -> _T:
        try:
            loop = self._private_loop()
        except BaseException:
            coro.close()
            raise
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            # The coroutine bounds itself; the margin only guards against a wedged loop.
            return fut.result(budget + _CLOSE_WAIT_S)
        except concurrent.futures.CancelledError:
            raise RuntimeError("health checker closed during the call") from None
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise RuntimeError("health checker loop did not answer in time") from None

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._thread is not None and threading.current_thread() is self._thread:
                raise RuntimeError("synchronous checks cannot run on the checker's own loop thread")
            if self._loop is None:
                loop = new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=_run_loop,
                    args=(loop, ready),
                    name="crackseg-health-checker",
                    daemon=True,
                )
                thread.start()
                ready.wait(10.0)
                self._thread, self._loop = thread, loop
            return self._loop

    # --- per-loop state ---------------------------------------------------------------

    def _state_for(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                for old_loop in [lp for lp in self._states if lp.is_closed()]:
                    self._states.pop(old_loop).abandon()
                state = self._states[loop] = _LoopState(loop, self.pool_size_per_host)
            return state

    def _close_state(self, state: _LoopState, current: asyncio.AbstractEventLoop | None) -> None:
        loop = state.loop
        if loop.is_closed():
            state.abandon()
        elif loop is current:
            # close() called synchronously on a running loop: abort now, finish async.
            state.fast.close()
            if state.session is not None:
                task = loop.create_task(state.aclose())
                self._pending_closes.add(task)
                task.add_done_callback(self._pending_closes.discard)
        elif loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(state.aclose(), loop).result(_CLOSE_WAIT_S)
            except Exception:
                state.abandon()
        else:
            try:
                loop.run_until_complete(state.aclose())
            except Exception:
                state.abandon()

    # --- transport details ------------------------------------------------------------

    def _target(self, url: str) -> Target | str:
        """Parse and cache a URL; a str is the message for an unusable one."""
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _MAX_CACHED_TARGETS:
                self._targets.clear()
            target = self._targets[url] = parse_target(url, self.headers)
        return target

    async def _get_aiohttp(self, state: _LoopState, target: Target, deadline: float) -> _Answer:
        session = state.session
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=self.pool_size_per_host,
                ssl=self.verify_tls,
                ttl_dns_cache=60,
            )
            session = state.session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT, **self.headers},
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        async with asyncio.timeout_at(deadline):
            async with session.get(target.url, allow_redirects=False) as resp:
                chunks: list[bytes] = []
                size = 0
                truncated = False
                while True:
                    chunk = await resp.content.read(self.max_body_bytes - size + 1)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        truncated = True
                        resp.close()  # drop the connection rather than drain the rest
                        break
                body = b"".join(chunks)[: self.max_body_bytes]
                return _Answer(
                    resp.status,
                    resp.headers.get("Content-Type"),
                    resp.headers.get("Location"),
                    body,
                    truncated,
                )


def _describe(exc: BaseException, timeout: float, host: str) -> tuple[str, str]:
    """A message naming the cause of a failed check, and a short error kind."""
    if isinstance(exc, TimeoutError):
        return f"timeout after {_seconds(timeout)}s", "timeout"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed: {exc.certificate_error}", "tls"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return f"TLS error: {exc}", "tls"
    if isinstance(exc, aiohttp.ClientConnectorDNSError | socket.gaierror):
        reason = getattr(getattr(exc, "os_error", exc), "strerror", None) or str(exc)
        return f"DNS lookup failed for {host}: {reason}", "dns"
    if isinstance(exc, ClientClosedError):
        return "checker closed during the check", "closed"
    if isinstance(exc, ConnectionClosedError | aiohttp.ServerDisconnectedError):
        return "connection closed by server without a response", "connection_closed"
    if isinstance(exc, InvalidResponseError):
        return f"invalid HTTP response: {exc}", "invalid_response"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return f"invalid HTTP response: {getattr(exc, 'message', None) or exc}", "invalid_response"
    os_error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(os_error, ConnectionRefusedError) or (
        isinstance(os_error, OSError)
        and (os_error.errno == errno.ECONNREFUSED or "Connection refused" in str(os_error))
    ):
        return "connection refused", "connection_refused"
    if isinstance(os_error, OSError):
        return f"connection error: {os_error.strerror or os_error}", "connection_error"
    return f"check failed: {type(exc).__name__}: {exc}", "error"


def _seconds(value: float) -> str:
    """10 -> "10", 0.59987 -> "0.6" (a timeout clipped by wait_for_healthy), 150.4 -> "150"."""
    if value == int(value):
        return str(int(value))
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000.0


def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
