"""The default HTTP health checker: fast keep-alive GETs, honest failure messages.

Every check goes through :mod:`._fastclient` (asyncio protocol + httptools, ~5x cheaper
than aiohttp per check); ``https://`` only swaps the transport for TLS, so both schemes
share one parser, one set of limits and one set of error texts. Connection pools are per
event loop, so one checker serves its synchronous facade (a private loop thread) and any
number of running loops (the monitor engine calls
:meth:`DefaultHealthChecker.check_health_async` on its own).
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
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urljoin

from crackseg.utils.deployment.errors import ConfigError, require_positive
from crackseg.utils.deployment.eventloop import new_event_loop
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks._fastclient import (
    Exchange,
    FastClient,
    Target,
    default_max_connections,
    outcome_of,
    parse_target,
)
from crackseg.utils.deployment.monitoring.checks._fastconn import (
    ClientClosedError,
    ConnectionClosedError,
    FastResponse,
    InvalidResponseError,
    PoolTimeoutError,
)
from crackseg.utils.deployment.monitoring.checks.base import (
    MAX_BODY_BYTES,
    HealthChecker,
    classify_response,
    failure,
)
from crackseg.utils.deployment.redact import is_secret_key, redact_text

__all__ = ["DefaultHealthChecker", "Probe"]

_T = TypeVar("_T")
# ~450 B each. Above the largest fleet one checker serves (the monitor cycles through every
# deployment's URL each round, so a smaller cache would miss on every check), bounded still.
_MAX_CACHED_TARGETS = 250_000
_CLOSE_WAIT_S = 5.0
#: Never sent to another origin after a redirect (with every configured header whose
#: name :func:`~crackseg.utils.deployment.redact.is_secret_key` calls secret); a
#: configured Host belongs to the first origin too.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "host"})


class _LoopState:
    """Everything a checker holds for one event loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pool_size: int, max_connections: int
    ) -> None:
        self.loop = loop
        self.fast = FastClient(loop, pool_size, max_connections=max_connections)

    async def aclose(self) -> None:
        self.fast.close()

    def abandon(self) -> None:
        """Best-effort release when the loop can no longer run coroutines."""
        with contextlib.suppress(Exception):
            self.fast.abandon()


class Probe(Exchange):
    """One deployment's check in flight on :meth:`DefaultHealthChecker.start_check`, reused
    for each next one: nothing per check for the GC to promote (see ``FastClient.start``)."""

    __slots__ = ("busy", "checker", "done_fn", "start", "state", "target", "timeout")

    def __init__(
        self, checker: DefaultHealthChecker, done: Callable[[HealthCheckResult], None]
    ) -> None:
        super().__init__()
        self.checker = checker
        self.done_fn = done
        self.busy = False
        self.state: _LoopState | None = None
        self.target: Target | None = None
        self.timeout = 0.0
        self.start = 0.0

    def answered(self, outcome: FastResponse | BaseException) -> None:
        checker, target, start = self.checker, self.target, self.start
        assert target is not None and self.state is not None
        if isinstance(outcome, BaseException):
            self._done(_failed(outcome, self.timeout, target, start, 0))
        elif _is_redirect(outcome) and checker.follow_redirects:
            task = asyncio.get_running_loop().create_task(
                checker._follow(self.state, target, outcome, start, self.deadline, self.timeout)
            )
            task.add_done_callback(lambda t: self._done(_settled(t, start)))
        else:
            self._done(checker._answer(outcome, start, 0))

    def _done(self, result: HealthCheckResult) -> None:
        self.busy = False
        self.target = None
        self.done_fn(result)


class _Handoff:
    """One blocking caller's answer from the loop: a held lock, released with the value."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: HealthCheckResult | BaseException | None = None

    def set(self, value: HealthCheckResult | BaseException) -> None:
        self.value = value
        self._lock.release()

    def settle(self, task: asyncio.Task[HealthCheckResult]) -> None:
        self.set(outcome_of(task))

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=timeout)


class _SyncProbe(Probe):
    """A :class:`Probe` for one blocking call: a closed client is an error, not a result."""

    __slots__ = ("handoff",)

    def __init__(self, checker: DefaultHealthChecker, handoff: _Handoff) -> None:
        super().__init__(checker, handoff.set)
        self.handoff = handoff

    def answered(self, outcome: FastResponse | BaseException) -> None:
        if isinstance(outcome, ClientClosedError):
            self.busy = False
            self.handoff.set(outcome)
        else:
            super().answered(outcome)


class DefaultHealthChecker(HealthChecker):
    """HTTP(S) GET health checks with a whole-check timeout and keep-alive pools.

    2xx is healthy unless a JSON body says ``"status": "degraded"``/``"unhealthy"``; a
    non-2xx answer whose body says degraded reads as degraded; other answers and every
    transport failure are unhealthy with an ``error_message`` naming the cause
    (``HTTP 500``, ``timeout after 10s``, ``connection refused``, ``DNS ...``,
    ``TLS ...``, ``invalid HTTP response ...``). ``details`` carries ``http_status`` when
    an answer came, and ``error_type`` when none did. Redirects are reported, not
    followed, unless ``follow_redirects=True``; a followed redirect to another origin
    (scheme, host or port) carries no ``Authorization``, ``Cookie`` or secret-named
    configured header, and a Location is only ever shown redacted. Bodies are read
    (gzip/deflate decoded) up to ``max_body_bytes``; response heads are bounded (8190
    bytes a line, 100 headers, 64 KiB in all). The timeout bounds the whole check:
    connect, TLS, send, headers and body (and redirects).

    Connections are pooled per origin (scheme, host, port), so every deployment on one
    host shares them. Each event loop's pool holds at most ``pool_size_per_host``
    connections to one origin and ``max_connections`` in all (in use, idle or
    connecting; every socket counts). ``max_connections`` defaults to a quarter of the
    soft ``RLIMIT_NOFILE`` (``ulimit -n``), within [8, 16384]: 5,000 at 20,000, 256 at
    1,024. A quarter, because a checker has a pool per loop (the monitor's and the
    synchronous facade's) and the process needs the rest for its store, logs, API and
    notification sockets and subprocess pipes. ``pool_size_per_host`` stays 100: enough
    for a slow but healthy origin (50 checks/s answered in 2 s) without queueing, while
    the total still lets 50 origins reach it at once. At the total, a check to an origin
    with no idle connection closes the least recently used idle one of another origin;
    with none idle it waits, fairly (first come first served within an origin, round
    robin across origins), and the wait counts against its timeout: past it, ``timeout
    after 10s (waiting for a connection: 5000 open, limit 5000)``.

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
        max_connections: int | None = None,
    ) -> None:
        require_positive("max_redirects", max_redirects, allow_zero=True)
        require_positive("max_body_bytes", max_body_bytes)
        _require_count("pool_size_per_host", pool_size_per_host)
        if max_connections is None:
            max_connections = default_max_connections()
        _require_count("max_connections", max_connections)
        self.max_connections = int(max_connections)
        self.follow_redirects = follow_redirects
        self.max_redirects = int(max_redirects)
        self.max_body_bytes = int(max_body_bytes)
        self.verify_tls = verify_tls
        self.pool_size_per_host = int(pool_size_per_host)
        self.headers: dict[str, str] = dict(headers or {})
        for name, value in self.headers.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise ConfigError(f"headers[{name!r}]", "must not contain CR, LF or NUL")
        self._targets: dict[tuple[str, bool], Target | str] = {}
        self._tls: ssl.SSLContext | None = None
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- public API -------------------------------------------------------------------

    def check_health(self, url: str, timeout: float = 10) -> HealthCheckResult:
        """Check ``url`` once (blocking); the result arrives within ``timeout`` seconds.

        On the checker's private loop, started as the monitor starts its checks: without a
        task or a coroutine when a connection is idle (the common case for a script or a
        thread checking the same services again and again).
        """
        require_positive("timeout", timeout)
        loop = self._private_loop()
        handoff = _Handoff()
        loop.call_soon_threadsafe(self._start_sync, url, timeout, handoff)
        # The check bounds itself; the margin only guards against a wedged loop.
        if not handoff.wait(timeout + _CLOSE_WAIT_S):
            raise RuntimeError("health checker loop did not answer in time")
        value = handoff.value
        if isinstance(value, HealthCheckResult):
            return value
        raise RuntimeError("health checker closed during the call") from value

    def _start_sync(self, url: str, timeout: float, handoff: _Handoff) -> None:
        """On the private loop: a check for :meth:`check_health`, answered into ``handoff``."""
        try:
            loop = asyncio.get_running_loop()
            if loop not in self._states:
                self._state_for(loop)
            if self.start_check(_SyncProbe(self, handoff), url, timeout):
                return
            task = loop.create_task(self.check_health_async(url, timeout))
        except BaseException as exc:
            handoff.set(exc)
            raise
        task.add_done_callback(handoff.settle)

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
        return await self._follow(state, self._target(url), None, start, loop.time() + timeout,
                                  timeout)  # fmt: skip

    def start_check(self, probe: Probe, url: str, timeout: float) -> bool:
        """Start a check of ``url`` on the running loop without a task, if the connection it
        needs is idle in this loop's pool; ``probe.done(result)`` then gets what
        :meth:`check_health_async` would return, on the loop. False when it cannot start
        so: await :meth:`check_health_async` instead. For the monitor's engine, whose checks
        find their connections idle in the steady state; ``probe`` (from :meth:`probe`)
        carries one check at a time and is kept for the next.
        """
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        target = self._target(url)
        if state is None or not isinstance(target, Target) or timeout <= 0:
            return False
        if probe.busy and probe.state is state:
            return False  # its check still runs here (busy on an earlier loop: that one ended)
        probe.state, probe.target, probe.timeout = state, target, timeout
        probe.start = time.monotonic()
        tls = self._tls_context() if target.https else None
        probe.busy = state.fast.start(target.host, target.port, target.request,
                                      self.max_body_bytes, loop.time() + timeout, tls,
                                      probe)  # fmt: skip
        return probe.busy

    def probe(self, done: Callable[[HealthCheckResult], None], url: str | None = None) -> Probe:
        """A reusable carrier for :meth:`start_check`, whose results go to ``done``; with
        ``url``, the URL is parsed now (its objects made with the caller's, not on the loop)."""
        if url is not None:
            self._target(url)
        return Probe(self, done)

    async def _follow(
        self,
        state: _LoopState,
        target: Target | str,
        resp: FastResponse | None,
        start: float,
        deadline: float,
        timeout: float,
    ) -> HealthCheckResult:
        """From ``target`` (``resp``: its answer, when already in) to the check's result."""
        hops = 0
        visited: set[str] | None = None
        origin = target.origin if isinstance(target, Target) else None
        cross_origin = False
        while True:
            if isinstance(target, str):
                return failure(target, _ms(start), error_type="invalid_url")
            if resp is None:
                try:
                    tls = self._tls_context() if target.https else None
                    resp = await state.fast.get(target.host, target.port, target.request,
                                                self.max_body_bytes, deadline, tls)  # fmt: skip
                except Exception as exc:
                    return _failed(exc, timeout, target, start, hops)
            if not _is_redirect(resp) or not self.follow_redirects:
                return self._answer(resp, start, hops)
            location = resp.location
            assert location is not None
            shown = redact_text(location)  # a Location may carry ?token=...
            next_url = urljoin(target.url, location)
            if visited is None:
                visited = {target.url}
            if next_url in visited:
                return failure(
                    f"redirect loop: {shown} was already visited",
                    _ms(start),
                    http_status=resp.status,
                    location=shown,
                    redirects=hops,
                    error_type="redirect_loop",
                )
            hops += 1
            if hops > self.max_redirects:
                return failure(
                    f"too many redirects (more than {self.max_redirects})",
                    _ms(start),
                    http_status=resp.status,
                    location=shown,
                    redirects=hops - 1,
                    error_type="too_many_redirects",
                )
            visited.add(next_url)
            target = self._target(next_url, cross_origin)
            if isinstance(target, Target) and target.origin != origin and not cross_origin:
                # Credentials were meant for the configured origin only (requests and
                # httpx drop them too); once dropped they stay dropped.
                cross_origin = True
                target = self._target(next_url, cross_origin)
            resp = None

    def _answer(self, resp: FastResponse, start: float, hops: int) -> HealthCheckResult:
        """The result of an answer that is not followed further."""
        status = resp.status
        ms = (resp.received - start) * 1000.0
        if _is_redirect(resp):
            shown = redact_text(resp.location or "")
            return failure(
                f"HTTP {status} redirect to {shown} (redirects not followed)",
                ms,
                http_status=status,
                location=shown,
                error_type="redirect",
            )
        result = classify_response(status, resp.body, ms, resp.content_type)
        if resp.truncated:
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
                state = self._states[loop] = _LoopState(
                    loop, self.pool_size_per_host, self.max_connections
                )
            return state

    def _close_state(self, state: _LoopState, current: asyncio.AbstractEventLoop | None) -> None:
        loop = state.loop
        if loop.is_closed():
            state.abandon()
        elif loop is current:
            state.fast.close()  # close() called synchronously on its running loop
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

    def _target(self, url: str, cross_origin: bool = False) -> Target | str:
        """Parse and cache a URL; a str is the message for an unusable one.

        ``cross_origin`` leaves out the configured credentials (and a URL's own
        ``user:password@`` is that URL's, so it stays).
        """
        key = (url, cross_origin)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _MAX_CACHED_TARGETS:
                self._targets.clear()
            headers = self.headers
            if cross_origin:
                headers = {
                    k: v
                    for k, v in headers.items()
                    if k.lower() not in _CREDENTIAL_HEADERS and not is_secret_key(k)
                }
            target = self._targets[key] = parse_target(url, headers)
        return target

    def _tls_context(self) -> ssl.SSLContext:
        ctx = self._tls
        if ctx is None:
            ctx = ssl.create_default_context()
            if not self.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._tls = ctx
        return ctx


def _require_count(field: str, value: int) -> None:
    """A whole number >= 1 (a connection count), or a ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"must be a whole number >= 1, got {value!r}")
    if value < 1:
        raise ConfigError(field, f"must be >= 1, got {value}")


def _describe(exc: BaseException, timeout: float, host: str) -> tuple[str, str]:
    """A message naming the cause of a failed check, and a short error kind."""
    if isinstance(exc, PoolTimeoutError):
        return f"timeout after {_seconds(timeout)}s ({exc.reason})", "timeout"
    if isinstance(exc, TimeoutError):
        return f"timeout after {_seconds(timeout)}s", "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc}", "tls"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}", "tls"
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed for {host}: {exc.strerror or exc}", "dns"
    if isinstance(exc, ClientClosedError):
        return "checker closed during the check", "closed"
    if isinstance(exc, ConnectionClosedError):
        return "connection closed by server without a response", "connection_closed"
    if isinstance(exc, InvalidResponseError):
        return f"invalid HTTP response: {exc}", "invalid_response"
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError)
        and (exc.errno == errno.ECONNREFUSED or "Connection refused" in str(exc))
    ):
        return "connection refused", "connection_refused"
    if isinstance(exc, OSError):
        return f"connection error: {exc.strerror or exc}", "connection_error"
    return f"check failed: {type(exc).__name__}: {exc}", "error"


def _is_redirect(resp: FastResponse) -> bool:
    return 300 <= resp.status < 400 and resp.status != 304 and resp.location is not None


def _failed(
    exc: BaseException, timeout: float, target: Target, start: float, hops: int
) -> HealthCheckResult:
    message, kind = _describe(exc, timeout, target.host)
    details: dict[str, Any] = {"error_type": kind}
    if hops:
        details["redirects"] = hops
    if isinstance(exc, PoolTimeoutError) and not exc.per_origin:
        # Every connection of the checker was busy: its own limit, not the target, failed.
        details["checker_saturated"] = True
    return failure(redact_text(message), _ms(start), **details)


def _settled(task: asyncio.Task[HealthCheckResult], start: float) -> HealthCheckResult:
    if task.cancelled():
        return failure("checker closed during the check", _ms(start), error_type="closed")
    exc = task.exception()
    if exc is not None:
        return failure(f"check failed: {type(exc).__name__}", _ms(start), error_type="error")
    return task.result()


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
