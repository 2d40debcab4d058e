"""The web face of a monitor: status page, JSON API, Prometheus metrics, liveness.

Routes (every error is RFC 9457 ``application/problem+json``: :mod:`.problems`):

- ``/`` and ``/static/*``: the status page (static files; it reads the API every few seconds).
- ``/api/v1/...``: deployments, history and deployment records (handlers in :mod:`.api`),
  alerts and silences (:mod:`.alerts`), alert delivery counters and dead letters
  (:mod:`.notifications`), rollouts and their event streams (:mod:`.rollouts`; the old
  ``/api/v1/deploys`` paths answer 308 there). Each route is an :class:`~.operations.Op` (:data:`ALL_OPS`):
  ``/api/v1/openapi.json`` is generated from them and their models (:mod:`.models`), and with
  ``CRACKSEG_CHECK_ANSWERS=1`` (the test suite) every answer is held to its model. Lists are
  cursor pages; times are Unix seconds with RFC 3339 beside them. Time series are oldest
  first; deployment records and dead letters newest first. A new route: declare an ``Op``
  and add it to :data:`ALL_OPS`.
- ``/metrics``: the app's own registry (see :mod:`..metrics`) in the Prometheus text format or
  OpenMetrics, gzip-encoded when asked (``Accept``, ``Accept-Encoding``: :func:`..exposition.negotiate`).
- ``/healthz``: 200 while the check engine runs and keeps up, 503 (with the reason) when it is
  stopped or overloaded.
- ``/health``: whether the engine runs, in the spec's health format, so the monitor can be
  checked like any service it checks: 200 ``{"status": "healthy", "version"}``, or 500
  ``{"status": "unhealthy", "issues": [...]}`` when the engine is stopped.

Authorisation: with ``token`` set, every write (POST, PUT, PATCH, DELETE) needs
``Authorization: Bearer <token>``; with ``protect_reads`` too, API reads need it as well.
``/healthz``, the static page itself (it holds no data and asks for the token) and, unless
``protect_metrics``, ``/metrics`` stay open. Without a token nothing is protected, which is
why servers bind 127.0.0.1 by default. Secrets never reach a response: URLs are redacted.

>>> # runner, port = await start_web(monitor, token="s3cret")
>>> # with WebServer(monitor) as server: print(server.url)
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.service.exposition import LabelledRegistry, negotiate
from crackseg.utils.deployment.service.metrics import (
    MonitorLike,
    build_registry,
    default_monitor_instance,
    package_version,
)
from crackseg.utils.deployment.service.serve import serve_app
from crackseg.utils.deployment.service.store_health import StoreCollector, store_health
from crackseg.utils.deployment.service.web.alerts import ALERT_OPS
from crackseg.utils.deployment.service.web.api import (
    API_OPS,
    CTX,
    MAX_BODY_BYTES,
    ApiError,
    Ctx,
    error_response,
    json_response,
    scrub_text,
)
from crackseg.utils.deployment.service.web.badges import BADGE_OPS
from crackseg.utils.deployment.service.web.file_paths import allowed_dirs
from crackseg.utils.deployment.service.web.incidents import INCIDENT_OPS
from crackseg.utils.deployment.service.web.maintenance import MAINTENANCE_OPS
from crackseg.utils.deployment.service.web.models import EngineHealth, Liveness
from crackseg.utils.deployment.service.web.notifications import NOTIFICATION_OPS
from crackseg.utils.deployment.service.web.openapi import openapi_document
from crackseg.utils.deployment.service.web.operations import Op, check_answer, mount
from crackseg.utils.deployment.service.web.public import PUBLIC_OPS
from crackseg.utils.deployment.service.web.ranges import RANGE_OPS
from crackseg.utils.deployment.service.web.rollouts import ROLLOUT_OPS, ROLLOUTS

__all__ = [
    "ALL_OPS",
    "API",
    "CHECK_ANSWERS_ENV",
    "CTX",
    "MAX_BODY_BYTES",
    "ROOT_OPS",
    "STATIC_DIR",
    "ApiError",
    "Handler",
    "WebServer",
    "create_app",
    "openapi_bytes",
    "scrub_text",
    "start_web",
]

logger = logging.getLogger("crackseg.utils.deployment.web")

STATIC_DIR = Path(__file__).parent.parent / "static"
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- page and probes -----------------------------------------------------------------------


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@functools.lru_cache(maxsize=1)
def openapi_bytes() -> bytes:
    """The OpenAPI description of :data:`ALL_OPS`, as served."""
    return orjson.dumps(openapi_document(ALL_OPS), option=orjson.OPT_INDENT_2)


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.Response(body=openapi_bytes(), content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    m = request.app[CTX].monitor
    # Only the engine's running flag: engine_stats() sorts its lateness samples and
    # monitored_deployments copies every configuration, too slow for a frequent probe.
    running = bool(m.monitoring_active)
    body: dict[str, Any] = {"status": "ok" if running else "stopped", "monitoring_active": running}
    overload = getattr(m, "overload_reason", None)
    reason = overload() if running and overload is not None else None
    if reason:
        body.update(status="overloaded", reason=reason)
    store = store_health(getattr(m, "store", None))
    if store is not None and not store["ok"]:
        # Checks go on, but their history is lost: not healthy, and the reason says why.
        body.update(status="store_failing", reason=store["reason"], rows_lost=store["rows_lost"])
        reason = store["reason"]
    return json_response(body, 200 if running and not reason else 503)


async def _health(request: web.Request) -> web.Response:
    m = request.app[CTX].monitor
    version = package_version()
    if not m.monitoring_active:
        issues = ["the check engine is stopped"]
        return json_response({"status": "unhealthy", "issues": issues, "version": version}, 500)
    return json_response({"status": "healthy", "version": version}, 200)


async def _metrics(request: web.Request) -> web.Response:
    body, headers = await asyncio.to_thread(
        negotiate,
        request.app[CTX].registry,
        request.headers.get("Accept"),
        request.headers.get("Accept-Encoding"),
    )
    return web.Response(body=body, headers={**headers, "Vary": "Accept, Accept-Encoding"})


# -- middleware and assembly ---------------------------------------------------------------


#: Set to 1 to hold every answer to its documented model (the test suite does): one that
#: differs is replaced by a 500 problem saying how, so the document cannot drift.
CHECK_ANSWERS_ENV = "CRACKSEG_CHECK_ANSWERS"


@web.middleware
async def _check(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    resource = request.match_info.route.resource
    op = _OPS_BY_ROUTE.get((request.method, resource.canonical if resource else ""))
    if op is None or not isinstance(response, web.Response) or request.method == "HEAD":
        return response
    body = response.body if isinstance(response.body, bytes) else b""
    problem = check_answer(op, response.status, body)
    if problem is None:
        return response
    logger.error("%s %s answered off its document: %s", request.method, request.path, problem)
    return error_response(500, f"answer differs from the API document: {problem}", None)


def _needs_token(ctx: Ctx, request: web.Request) -> bool:
    if ctx.token is None:
        return False
    if request.method in _WRITE_METHODS:
        return True
    path = request.path
    if path == "/metrics":
        return ctx.protect_metrics
    return ctx.protect_reads and path.startswith("/api/")


def _authorised(ctx: Ctx, request: web.Request) -> bool:
    """Whether the request bears the token; any malformed credential is simply not it."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or ctx.token is None:
        return False
    try:
        # aiohttp keeps undecodable header bytes as lone surrogates: encoding them raises.
        raw = presented.strip().encode("utf-8")
    except UnicodeError:
        return False
    return hmac.compare_digest(raw, ctx.token)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    if _needs_token(ctx, request) and not _authorised(ctx, request):
        return error_response(
            401, "missing or invalid bearer token", "Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="crackseg-monitor"'},
        )  # fmt: skip
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.field, errors=exc.errors)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        return error_response(exc.status, exc.reason, None)
    except Exception as exc:
        # The exception text may carry a URL with a secret: log its type and where it was
        # raised, never its message; answer generically.
        where = traceback.extract_tb(exc.__traceback__)[-1]
        logger.error(
            "web handler failed for %s %s: %s at %s:%s", request.method, request.path,
            type(exc).__name__, where.filename, where.lineno,
        )  # fmt: skip
        return error_response(500, "internal error", None)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.content_type == "text/html":
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
        )


def create_app(
    monitor: MonitorLike,
    *,
    token: str | None = None,
    protect_reads: bool = False,
    protect_metrics: bool = False,
    orchestrator: Any = None,
    silences: Any = None,
    monitor_instance: str | None = None,
    maintenance: Any = None,
    rollouts: Any = None,
    allowed_file_dirs: Iterable[str] = (),
) -> web.Application:
    """The aiohttp application over ``monitor`` (see the module docstring for routes).

    ``orchestrator`` (anything with ``get_deployment_history()``) feeds ``GET
    /api/v1/rollouts``; without it the monitor's store records do. ``rollouts`` (a
    :class:`~..supervisor.RolloutManager`) runs rollouts through the API (:mod:`.rollouts`);
    without one those routes answer 404. ``silences`` is a
    :class:`~...monitoring.suppression.SilenceRegistry` (``add(...) -> id``, ``list()``, ``remove(id)``);
    without one the silence routes answer 404. Alert delivery (``/api/v1/notifications``)
    reads ``monitor.dispatcher``.
    Registers one result listener on ``monitor`` (histogram and uptime counts).
    ``monitor_instance`` labels every series of ``/metrics`` (:func:`start_web` defaults it
    to this host and the bound port). ``maintenance`` (a ``MaintenanceSchedule`` or a
    callable returning the current one) feeds ``/api/v1/maintenance``.
    ``allowed_file_dirs``: where the TLS files of deployments added through the API may lie
    (none: such file paths are refused, see :mod:`.file_paths`).
    """
    if token is not None and not token.strip():
        raise ConfigError("token", "must not be empty (omit it to disable authorisation)")
    registry, uptime = build_registry(monitor, monitor_instance=monitor_instance)
    registry.register(StoreCollector(monitor))
    checking = os.environ.get(CHECK_ANSWERS_ENV) == "1"
    middlewares = [_check, _guard] if checking else [_guard]
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app[CTX] = Ctx(
        monitor, token.strip().encode() if token else None, protect_reads, protect_metrics,
        orchestrator, silences, registry, uptime,
    )  # fmt: skip
    app[CTX].maintenance = maintenance
    app[CTX].allowed_file_dirs = allowed_dirs(allowed_file_dirs)
    if rollouts is not None:
        app[ROLLOUTS] = rollouts
    app.on_response_prepare.append(_security_headers)

    async def _close_uptime(app: web.Application) -> None:
        await asyncio.to_thread(uptime.close)

    app.on_cleanup.append(_close_uptime)
    r = app.router
    r.add_static("/static", STATIC_DIR)
    mount(r, API, ALL_OPS)
    return app


API = "/api/v1"
#: Routes of the server root (paths from ``/``, hence ``//``) and the API description.
ROOT_OPS: tuple[Op, ...] = (
    Op("GET", "//", _index, "The status page", "page", {200: None}, media_type="text/html"),
    Op("GET", "//healthz", _healthz, "Liveness: the check engine runs and keeps up", "probes",
       {200: Liveness, 503: Liveness}),
    Op("GET", "//health", _health, "The monitor's own health, in the spec's format", "probes",
       {200: EngineHealth, 500: EngineHealth}),
    Op("GET", "//metrics", _metrics, "Prometheus metrics (text format or OpenMetrics, gzip "
       "when asked)", "probes", {200: None}, media_type="text/plain"),
    Op("GET", "/openapi.json", _openapi, "This description (OpenAPI 3.1)", "meta", {200: None}),
)  # fmt: skip
#: Every documented route of :func:`create_app`.
ALL_OPS: tuple[Op, ...] = (
    ROOT_OPS
    + API_OPS
    + ALERT_OPS
    + NOTIFICATION_OPS
    + RANGE_OPS
    + INCIDENT_OPS
    + ROLLOUT_OPS
    + MAINTENANCE_OPS
    + BADGE_OPS
    + PUBLIC_OPS
)
_OPS_BY_ROUTE = {(op.method, op.url(API)): op for op in ALL_OPS}


async def start_web(
    monitor: MonitorLike, host: str = "127.0.0.1", port: int = 0, **kw: Any
) -> tuple[web.AppRunner, int]:
    """Serve :func:`create_app` (``kw`` go to it) on the running loop; returns the runner and
    the bound port. Stop with ``await runner.cleanup()``."""
    app = create_app(monitor, **kw)
    runner, bound = await serve_app(app, host, port, shutdown_timeout=2.0)
    registry = app[CTX].registry
    if isinstance(registry, LabelledRegistry):
        # Known only once bound (port 0 binds any free port).
        registry.labels.setdefault("monitor_instance", default_monitor_instance(bound))
    return runner, bound


class WebServer:
    """:func:`start_web` on its own event loop thread, for synchronous programs.

    >>> # with WebServer(monitor, port=8080, token="s3cret") as server:
    >>> #     print(server.url)
    """

    def __init__(
        self, monitor: MonitorLike, host: str = "127.0.0.1", port: int = 0, **kw: Any
    ) -> None:
        self.monitor, self.host, self.requested_port, self._kw = monitor, host, port, kw
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        if self.port is None:
            raise RuntimeError("server not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> int:
        """Bind and serve; returns the port. Raises what binding raised (e.g. port in use)."""
        if self._thread is not None:
            return self.port or 0
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._runner, self.port = loop.run_until_complete(
                    start_web(self.monitor, self.host, self.requested_port, **self._kw)
                )
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=main, name="crackseg-web", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"web server did not start within {timeout}s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise failure[0]
        return self.port or 0

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the thread. Safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = self._loop = None

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
