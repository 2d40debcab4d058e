"""The default HTTP health checker: fast keep-alive GETs, honest failure messages.

Every check goes through :mod:`._fastclient` (asyncio protocol + httptools, ~5x cheaper
than aiohttp per check); ``https://`` only swaps the transport for TLS, so both schemes
share one parser, one set of limits and one set of error texts. Connection pools are per
event loop (:mod:`.loops`), so one checker serves its synchronous facade (a private loop
thread, :mod:`.blocking`) and any number of running loops (the monitor engine calls
:meth:`DefaultHealthChecker.check_health_async` on its own, or starts checks on the
task-free path of :mod:`.fastpath` with a :class:`~.probe.Probe`).

The rooms: what is sent (:mod:`.request`), how redirects are taken
(:mod:`.redirects`), what an answer or an error becomes (:mod:`.outcome`,
:mod:`.classify`), the check in flight (:mod:`.probe`), and this class, which ties them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from crackseg.utils.deployment.errors import ConfigError, require_positive
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks._fastclient import (
    FastClient,
    Target,
    default_max_connections,
)
from crackseg.utils.deployment.monitoring.checks.base import MAX_BODY_BYTES, HealthChecker
from crackseg.utils.deployment.monitoring.checks.blocking import Handoff, PrivateLoop, SyncProbe
from crackseg.utils.deployment.monitoring.checks.loops import CLOSE_WAIT_S, LoopClients
from crackseg.utils.deployment.monitoring.checks.plan import CheckPlan
from crackseg.utils.deployment.monitoring.checks.probe import Probe
from crackseg.utils.deployment.monitoring.checks.redirects import follow
from crackseg.utils.deployment.monitoring.checks.request import RequestPolicy

__all__ = ["DefaultHealthChecker", "Probe"]

#: Deployments with a check of their own, each with its policy (and parsed targets).
_MAX_PLANS = 100_000


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
        self.request = RequestPolicy(
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            max_body_bytes=max_body_bytes,
            headers=headers,
            verify_tls=verify_tls,
        )
        _require_count("pool_size_per_host", pool_size_per_host)
        if max_connections is None:
            max_connections = default_max_connections()
        _require_count("max_connections", max_connections)
        self.max_connections = int(max_connections)
        self.pool_size_per_host = int(pool_size_per_host)
        self._loops = LoopClients(self.pool_size_per_host, self.max_connections)
        self._private = PrivateLoop("crackseg-health-checker")
        self._plans: dict[CheckPlan, RequestPolicy] = {}

    @property
    def follow_redirects(self) -> bool:
        return self.request.follow_redirects

    @property
    def max_redirects(self) -> int:
        return self.request.max_redirects

    @property
    def max_body_bytes(self) -> int:
        return self.request.max_body_bytes

    @property
    def verify_tls(self) -> bool:
        return self.request.verify_tls

    @property
    def headers(self) -> dict[str, str]:
        return self.request.headers

    # --- public API -------------------------------------------------------------------

    def check_health(self, url: str, timeout: float = 10) -> HealthCheckResult:
        """Check ``url`` once (blocking); the result arrives within ``timeout`` seconds.

        On the checker's private loop, started as the monitor starts its checks: without a
        task or a coroutine when a connection is idle (the common case for a script or a
        thread checking the same services again and again).
        """
        require_positive("timeout", timeout)
        loop = self._private.get()
        handoff = Handoff()
        loop.call_soon_threadsafe(self._start_sync, url, timeout, handoff)
        # The check bounds itself; the margin only guards against a wedged loop.
        if not handoff.wait(timeout + CLOSE_WAIT_S):
            raise RuntimeError("health checker loop did not answer in time")
        return handoff.result()

    def _start_sync(self, url: str, timeout: float, handoff: Handoff) -> None:
        """On the private loop: a check for :meth:`check_health`, answered into ``handoff``."""
        try:
            loop = asyncio.get_running_loop()
            self._client(loop)  # before start_check, which only starts on an existing one
            if self.start_check(SyncProbe(self.request, handoff), url, timeout):
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
        return self._private.run(coro, max_wait)

    async def check_health_async(self, url: str, timeout: float = 10) -> HealthCheckResult:
        """Check ``url`` once on the running loop; never raises for a failed check."""
        require_positive("timeout", timeout)
        loop = asyncio.get_running_loop()
        fast = self._client(loop)
        start = time.monotonic()
        return await follow(self.request, fast, self.request.target(url), None, start,
                            loop.time() + timeout, timeout)  # fmt: skip

    def check_plan(self, plan: CheckPlan, timeout: float = 10) -> HealthCheckResult:
        """Check one deployment's compiled check (blocking): its method, headers, body and
        TLS options sent, its conditions judged (:mod:`.plan`); HTTP plans only."""
        require_positive("timeout", timeout)
        return self._private.run(self.check_plan_async(plan, timeout), timeout)

    async def check_plan_async(self, plan: CheckPlan, timeout: float = 10) -> HealthCheckResult:
        """Async twin of :meth:`check_plan`, on the running loop."""
        require_positive("timeout", timeout)
        if plan.type != "http":
            raise ValueError(f"a {plan.type} check is not an HTTP check")
        loop = asyncio.get_running_loop()
        fast = self._client(loop)
        policy = self.policy_for(plan)
        start = time.monotonic()
        return await follow(policy, fast, policy.target(plan.url), None, start,
                            loop.time() + timeout, timeout)  # fmt: skip

    def policy_for(self, plan: CheckPlan | None) -> RequestPolicy:
        """The request policy of ``plan`` (made once per plan, bounded), or the checker's."""
        if plan is None or plan.default:
            return self.request
        policy = self._plans.get(plan)
        if policy is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            policy = self._plans[plan] = self.request.for_plan(plan)
        return policy

    def start_check(self, probe: Probe, url: str, timeout: float) -> bool:
        """Start a check of ``url`` on the running loop without a task, if the connection it
        needs is idle in this loop's pool; ``probe.done(result)`` then gets what
        :meth:`check_health_async` would return, on the loop. False when it cannot start
        so: await :meth:`check_health_async` instead. For the monitor's engine, whose checks
        find their connections idle in the steady state; ``probe`` (from :meth:`probe`)
        carries one check at a time and is kept for the next.
        """
        fast = self._loops.get(asyncio.get_running_loop())
        target = probe.policy.target(url)
        if fast is None or not isinstance(target, Target) or timeout <= 0:
            return False
        return probe.launch(fast, target, timeout)

    def task_free(self) -> bool:
        """True unless a subclass overrides :meth:`check_health_async` (see ``TaskFreeChecker``)."""
        return type(self).check_health_async is DefaultHealthChecker.check_health_async

    def probe(
        self,
        done: Callable[[HealthCheckResult], None],
        url: str | None = None,
        plan: CheckPlan | None = None,
    ) -> Probe:
        """A reusable carrier for :meth:`start_check`, whose results go to ``done``; with
        ``url``, the URL is parsed now (its objects made with the caller's, not on the loop);
        with ``plan``, its checks send and judge that deployment's check."""
        policy = self.policy_for(plan)
        if url is not None:
            policy.target(url)
        return Probe(policy, done)

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
        if self._private.on_it():
            raise RuntimeError("close() cannot run on the checker's own loop; use aclose()")
        self._loops.close_all()
        self._private.stop()

    async def aclose(self) -> None:
        """Close this loop's connections here, then everything else (see :meth:`close`)."""
        await self.release_loop()
        if self._loops.in_use() or self._private.started:
            await asyncio.to_thread(self.close)

    async def release_loop(self) -> None:
        """Close only the running loop's connections; call it before that loop ends.

        The checker stays usable from other loops and from the synchronous facade.
        """
        fast = self._loops.pop(asyncio.get_running_loop())
        if fast is not None:
            fast.close()

    def _client(self, loop: asyncio.AbstractEventLoop) -> FastClient:
        fast = self._loops.get(loop)
        return fast if fast is not None else self._loops.for_loop(loop)


def _require_count(field: str, value: int) -> None:
    """A whole number >= 1 (a connection count), or a ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"must be a whole number >= 1, got {value!r}")
    if value < 1:
        raise ConfigError(field, f"must be >= 1, got {value}")
