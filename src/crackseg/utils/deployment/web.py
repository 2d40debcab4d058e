"""The web face of a monitor: status page, JSON API, Prometheus metrics, liveness.

Routes (all JSON errors are ``{"error": message, "field": name-or-null}``):

- ``/`` and ``/static/*``: the status page (static files; it reads the API every few seconds).
- ``/api/v1/...``: deployments, history, alerts, deployment records, silences; described by
  ``/api/v1/openapi.json``. Time series are oldest first; deployment records newest first.
- ``/metrics``: Prometheus text from the app's own registry (see :mod:`.metrics`).
- ``/healthz``: 200 while the check engine runs, 503 otherwise.

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
import re
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .metrics import MonitorLike, UptimeTracker, build_registry
from .redact import redact_url

__all__ = ["MAX_BODY_BYTES", "WebServer", "create_app", "start_web"]

logger = logging.getLogger("crackseg.utils.deployment.web")

#: Largest request body accepted (bytes); larger ones get 413.
MAX_BODY_BYTES = 64 * 1024
STATIC_DIR = Path(__file__).with_name("static")
_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered as JSON ``{"error": message, "field": field}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@dataclass
class _Ctx:
    monitor: Any
    token: bytes | None
    protect_reads: bool
    protect_metrics: bool
    orchestrator: Any
    silences: Any
    registry: CollectorRegistry
    uptime: UptimeTracker


CTX = web.AppKey("crackseg_web", _Ctx)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str)
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _error(status: int, message: str, field: str | None = None, **headers: str) -> web.Response:
    return _json({"error": message, "field": field}, status, headers or None)


@functools.lru_cache(maxsize=4096)
def _scrub(text: str) -> str:
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)


def scrub_text(text: Any) -> Any:
    """``text`` with every URL in it redacted (non-strings pass through).

    Cached: the same URLs and errors come back on every refresh, and redaction is the
    costliest step of listing 1,000 statuses.
    """
    if not isinstance(text, str) or "://" not in text:
        return text
    return _scrub(text) if len(text) <= 1024 else _scrub.__wrapped__(text)


def _public_status(status: dict[str, Any], uptime: dict[str, float | None]) -> dict[str, Any]:
    d = dict(status)
    for key in ("health_check_url", "last_error"):
        d[key] = scrub_text(d.get(key))
    d["active_alerts"] = [
        {**a, "message": scrub_text(a.get("message"))} for a in d.get("active_alerts") or ()
    ]
    d["uptime_24h_percent"] = uptime.get("24h")
    d["uptime_7d_percent"] = uptime.get("7d")
    return d


def _public_record(meta: Any) -> dict[str, Any]:
    d: dict[str, Any] = meta.to_dict() if hasattr(meta, "to_dict") else dict(meta)
    for key in ("health_check_url", "deployment_url", "error_message", "rollback_reason"):
        d[key] = scrub_text(d.get(key))
    d.pop("extra", None)  # free-form: may hold anything, including credentials
    for change in d.get("state_history") or ():
        change["reason"] = scrub_text(change.get("reason"))
    return d


def _param(
    request: web.Request, name: str, kind: type, default: Any = None, **bounds: float
) -> Any:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ApiError(
            400, f"must be {'an integer' if kind is int else 'a number'}", name
        ) from None
    if value != value:
        raise ApiError(400, "must be a number", name)
    if "ge" in bounds and value < bounds["ge"]:
        raise ApiError(400, f"must be >= {bounds['ge']}", name)
    if "le" in bounds and value > bounds["le"]:
        raise ApiError(400, f"must be <= {bounds['le']}", name)
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "send a JSON object with Content-Type: application/json", "body")
    try:
        data = orjson.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes", "body") from None
    except orjson.JSONDecodeError:
        raise ApiError(400, "body is not valid JSON", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object", "body")
    return data


def _validation_error(exc: ValidationError) -> ApiError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"] if p != "[key]") or "body"
    msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
    return ApiError(400, msg, field)


_ThresholdKey = Literal[
    "response_time_ms", "cpu_usage_percent", "memory_usage_mb", "error_rate_percent"
]


class NewDeployment(BaseModel):
    """Body of ``POST /api/v1/deployments``; mirrors ``add_deployment_monitoring``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    deployment_id: str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
    )
    health_check_url: str = Field(
        min_length=8, max_length=2048, pattern=r"^https?://[^\s/?#]+[^\s]*$"
    )
    process_name: str | None = Field(None, min_length=1, max_length=256)
    check_interval: float = Field(30.0, gt=0, le=86_400)
    timeout: float | None = Field(None, gt=0, le=3_600)
    thresholds: dict[_ThresholdKey, float] | None = None
    failure_threshold: int | None = Field(None, ge=1, le=1_000)
    success_threshold: int | None = Field(None, ge=1, le=1_000)
    repeat_interval: float | None = Field(None, gt=0)


class NewSilence(BaseModel):
    """Body of ``POST /api/v1/silences``: match a deployment, an alert type, or both."""

    model_config = ConfigDict(extra="forbid", strict=True)
    deployment_id: str | None = Field(None, min_length=1, max_length=128)
    alert_type: str | None = Field(None, min_length=1, max_length=64)
    duration_seconds: float = Field(gt=0, le=366 * 86_400)
    comment: str = Field("", max_length=1_000)
    created_by: str = Field("api", max_length=128)


# -- handlers ------------------------------------------------------------------------------


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "openapi.json")


async def _healthz(request: web.Request) -> web.Response:
    m = request.app[CTX].monitor
    # Only the engine's running flag: engine_stats() sorts its lateness samples and
    # monitored_deployments copies every configuration, too slow for a frequent probe.
    running = bool(m.monitoring_active)
    body = {"status": "ok" if running else "stopped", "monitoring_active": running}
    return _json(body, 200 if running else 503)


async def _metrics(request: web.Request) -> web.Response:
    payload = await asyncio.to_thread(generate_latest, request.app[CTX].registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _list_deployments(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    wanted = request.query.get("status")

    def build() -> bytes:
        statuses = ctx.monitor.get_all_deployment_statuses()
        rows = [
            _public_status(s, ctx.uptime.uptime(dep_id))
            for dep_id, s in sorted(statuses.items())
            if wanted is None or s.get("health_status") == wanted
        ]
        body = {
            "deployments": rows,
            "count": len(rows),
            "monitoring_active": bool(ctx.monitor.monitoring_active),
            "generated_at": time.time(),
        }
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS, default=str)

    return web.Response(body=await asyncio.to_thread(build), content_type="application/json")


def _status_of(ctx: _Ctx, dep_id: str) -> dict[str, Any]:
    try:
        status = ctx.monitor.get_deployment_status(dep_id)
    except KeyError:
        raise ApiError(404, f"deployment {dep_id!r} is not monitored", "deployment_id") from None
    return _public_status(status, ctx.uptime.uptime(dep_id))


async def _get_deployment(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return _json(await asyncio.to_thread(_status_of, ctx, request.match_info["id"]))


async def _history(request: web.Request) -> web.Response:
    ctx, dep_id = request.app[CTX], request.match_info["id"]
    since = _param(request, "since", float)
    until = _param(request, "until", float)
    limit = _param(request, "limit", int, 500, ge=1, le=10_000)
    if since is not None and until is not None and until < since:
        raise ApiError(400, "must be >= since", "until")

    def read() -> dict[str, Any]:
        _status_of(ctx, dep_id)  # 404 unless monitored
        health = ctx.monitor.get_health_history(dep_id, since=since, until=until, limit=limit)
        res = ctx.monitor.get_resource_history(dep_id, since=since, until=until, limit=limit)
        rows = [r.to_dict() for r in health]
        for r in rows:
            r["error_message"] = scrub_text(r.get("error_message"))
        return {"deployment_id": dep_id, "health": rows, "resources": [r.to_dict() for r in res]}

    return _json(await asyncio.to_thread(read))


async def _add_deployment(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        spec = NewDeployment.model_validate(await _body(request))
    except ValidationError as exc:
        raise _validation_error(exc) from None

    def add() -> dict[str, Any]:
        # monitored_deployments copies every configuration: keep it off the event loop.
        if spec.deployment_id in ctx.monitor.monitored_deployments:
            raise ApiError(409, "already monitored; DELETE it first", "deployment_id")
        try:
            ctx.monitor.add_deployment_monitoring(**spec.model_dump(exclude_none=True))
        except ConfigError as exc:
            raise ApiError(400, exc.problem, exc.field) from None
        return _status_of(ctx, spec.deployment_id)

    status = await asyncio.to_thread(add)
    return _json(status, 201, {"Location": f"/api/v1/deployments/{spec.deployment_id}"})


async def _remove_deployment(request: web.Request) -> web.Response:
    ctx, dep_id = request.app[CTX], request.match_info["id"]
    if not await asyncio.to_thread(ctx.monitor.remove_deployment_monitoring, dep_id):
        raise ApiError(404, f"deployment {dep_id!r} is not monitored", "deployment_id")
    ctx.uptime.forget(dep_id)
    return web.Response(status=204)


async def _alerts(request: web.Request) -> web.Response:
    m = request.app[CTX].monitor
    dep_id = request.query.get("deployment_id") or None

    def read() -> list[dict[str, Any]]:
        # Statuses, not get_active_alerts(): each alert must name its deployment.
        statuses = m.get_all_deployment_statuses()
        return [
            {**a, "deployment_id": d, "message": scrub_text(a.get("message"))}
            for d, s in sorted(statuses.items())
            if dep_id is None or d == dep_id
            for a in s.get("active_alerts") or ()
        ]

    alerts = await asyncio.to_thread(read)
    return _json({"alerts": alerts, "count": len(alerts)})


async def _alert_history(request: web.Request) -> web.Response:
    m = request.app[CTX].monitor
    dep_id = request.query.get("deployment_id") or None
    since = _param(request, "since", float)
    limit = _param(request, "limit", int, 200, ge=1, le=10_000)
    events = await asyncio.to_thread(m.get_alert_history, dep_id, since, limit)
    rows = [e.to_dict() for e in events]
    for r in rows:
        r["message"] = scrub_text(r.get("message"))
    return _json({"events": rows, "count": len(rows)})


async def _deploys(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    artifact = request.query.get("artifact_id") or None
    limit = _param(request, "limit", int, 50, ge=1, le=10_000)

    def read() -> list[dict[str, Any]]:
        if ctx.orchestrator is not None:
            records = list(ctx.orchestrator.get_deployment_history())
        else:
            records = list(ctx.monitor.store.deployment_records())
        if artifact is not None:
            records = [r for r in records if getattr(r, "artifact_id", None) == artifact]
        records.sort(key=lambda r: getattr(r, "start_time", 0.0), reverse=True)
        return [_public_record(r) for r in records[:limit]]

    rows = await asyncio.to_thread(read)
    return _json({"deployments": rows, "count": len(rows)})


def _silences(request: web.Request) -> Any:
    reg = request.app[CTX].silences
    if reg is None:
        raise ApiError(404, "silences are not enabled on this server", None)
    return reg


def _silence_dict(s: Any) -> dict[str, Any]:
    d: dict[str, Any] = s.to_dict() if hasattr(s, "to_dict") else dict(s)
    return d


async def _list_silences(request: web.Request) -> web.Response:
    reg = _silences(request)
    rows = [_silence_dict(s) for s in await asyncio.to_thread(reg.list)]
    return _json({"silences": rows, "count": len(rows)})


async def _add_silence(request: web.Request) -> web.Response:
    reg = _silences(request)
    try:
        spec = NewSilence.model_validate(await _body(request))
    except ValidationError as exc:
        raise _validation_error(exc) from None
    if spec.deployment_id is None and spec.alert_type is None:
        raise ApiError(400, "give deployment_id, alert_type or both", "deployment_id")

    def add() -> dict[str, Any]:
        sid = reg.add(
            spec.deployment_id,
            spec.alert_type,
            spec.duration_seconds,
            spec.comment,
            created_by=spec.created_by,
        )
        found = [s for s in reg.list() if getattr(s, "id", None) == sid]
        return _silence_dict(found[0]) if found else {"id": sid}

    try:
        silence = await asyncio.to_thread(add)
    except ConfigError as exc:
        raise ApiError(400, exc.problem, exc.field) from None
    return _json(silence, 201, {"Location": f"/api/v1/silences/{silence.get('id')}"})


async def _remove_silence(request: web.Request) -> web.Response:
    reg = _silences(request)
    if not await asyncio.to_thread(reg.remove, request.match_info["id"]):
        raise ApiError(404, "no such silence", "silence_id")
    return web.Response(status=204)


# -- middleware and assembly ---------------------------------------------------------------


def _needs_token(ctx: _Ctx, request: web.Request) -> bool:
    if ctx.token is None:
        return False
    if request.method in _WRITE_METHODS:
        return True
    path = request.path
    if path == "/metrics":
        return ctx.protect_metrics
    return ctx.protect_reads and path.startswith("/api/")


def _authorised(ctx: _Ctx, request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or ctx.token is None:
        return False
    return hmac.compare_digest(presented.strip().encode(), ctx.token)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    if _needs_token(ctx, request) and not _authorised(ctx, request):
        return _error(
            401, "missing or invalid bearer token", "Authorization",
            **{"WWW-Authenticate": 'Bearer realm="crackseg-monitor"'},
        )  # fmt: skip
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.field)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        return _error(exc.status, exc.reason, None)
    except Exception as exc:
        # The exception text may carry a URL with a secret: log its type and where it was
        # raised, never its message; answer generically.
        where = traceback.extract_tb(exc.__traceback__)[-1]
        logger.error(
            "web handler failed for %s %s: %s at %s:%s", request.method, request.path,
            type(exc).__name__, where.filename, where.lineno,
        )  # fmt: skip
        return _error(500, "internal error", None)


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
) -> web.Application:
    """The aiohttp application over ``monitor`` (see the module docstring for routes).

    ``orchestrator`` (anything with ``get_deployment_history()``) feeds ``/api/v1/deploys``;
    without it the monitor's store records do. ``silences`` is a
    :class:`~.silences.SilenceRegistry` (``add(...) -> id``, ``list()``, ``remove(id)``);
    without one the silence routes answer 404.
    Registers one result listener on ``monitor`` (histogram and uptime counts).
    """
    if token is not None and not token.strip():
        raise ConfigError("token", "must not be empty (omit it to disable authorisation)")
    registry, uptime = build_registry(monitor)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_guard])
    app[CTX] = _Ctx(
        monitor, token.strip().encode() if token else None, protect_reads, protect_metrics,
        orchestrator, silences, registry, uptime,
    )  # fmt: skip
    app.on_response_prepare.append(_security_headers)

    async def _close_uptime(app: web.Application) -> None:
        await asyncio.to_thread(uptime.close)

    app.on_cleanup.append(_close_uptime)
    r = app.router
    r.add_get("/", _index)
    r.add_static("/static", STATIC_DIR)
    r.add_get("/healthz", _healthz)
    r.add_get("/metrics", _metrics)
    api = "/api/v1"
    r.add_get(f"{api}/openapi.json", _openapi)
    r.add_get(f"{api}/deployments", _list_deployments)
    r.add_post(f"{api}/deployments", _add_deployment)
    r.add_get(f"{api}/deployments/{{id}}", _get_deployment)
    r.add_delete(f"{api}/deployments/{{id}}", _remove_deployment)
    r.add_get(f"{api}/deployments/{{id}}/history", _history)
    r.add_get(f"{api}/alerts", _alerts)
    r.add_get(f"{api}/alerts/history", _alert_history)
    r.add_get(f"{api}/deploys", _deploys)
    r.add_get(f"{api}/silences", _list_silences)
    r.add_post(f"{api}/silences", _add_silence)
    r.add_delete(f"{api}/silences/{{id}}", _remove_silence)
    return app


async def start_web(
    monitor: MonitorLike, host: str = "127.0.0.1", port: int = 0, **kw: Any
) -> tuple[web.AppRunner, int]:
    """Serve :func:`create_app` (``kw`` go to it) on the running loop; returns the runner and
    the bound port. Stop with ``await runner.cleanup()``."""
    runner = web.AppRunner(create_app(monitor, **kw), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


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
