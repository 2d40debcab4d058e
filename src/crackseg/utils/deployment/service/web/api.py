"""The JSON API behind :mod:`.app`: ``/api/v1`` deployments, history, alerts, deploy records
and silences, plus the helpers every API handler shares (errors, parameters, bodies, redaction).

Private: :func:`.app.create_app` mounts these handlers with :func:`add_api_routes`. Every
handler answers JSON; problems are raised as :class:`ApiError` and turned into
``{"error": message, "field": name-or-null}`` by the web middleware. Blocking monitor and
store calls run in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.monitoring.spec import DeploymentSpec
from crackseg.utils.deployment.monitoring.tracked import metrics_dict
from crackseg.utils.deployment.redact import redact_text
from crackseg.utils.deployment.service.metrics import UptimeTracker
from crackseg.utils.deployment.validation import problems

__all__ = [
    "BODY_TIMEOUT_S",
    "CTX",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "ApiError",
    "Ctx",
    "NewDeployment",
    "NewSilence",
    "add_api_routes",
    "error_response",
    "host_dict",
    "json_body",
    "json_response",
    "location",
    "query_param",
    "scrub_text",
    "validation_error",
]


#: Largest request body accepted (bytes); larger ones get 413.
MAX_BODY_BYTES = 64 * 1024
#: Deepest nesting of objects/lists accepted in a request body (the body object is level 1);
#: deeper ones get 400 naming the top-level field.
MAX_JSON_DEPTH = 32
#: Seconds a client has to send a request body once its head arrived.
BODY_TIMEOUT_S = 10.0


class ApiError(Exception):
    """An error answered as JSON ``{"error": message, "field": field}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@dataclass
class Ctx:
    """What every handler of one app needs; stored on the app under :data:`CTX`."""

    monitor: Any
    token: bytes | None
    protect_reads: bool
    protect_metrics: bool
    orchestrator: Any
    silences: Any
    registry: CollectorRegistry
    uptime: UptimeTracker
    #: The maintenance windows now (a MaintenanceSchedule, or a callable giving the current
    #: one: a reload replaces it); None: none configured.
    maintenance: Any = None


CTX = web.AppKey("crackseg_web", Ctx)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` as a JSON response (non-string keys and odd values stringified)."""
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str)
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def error_response(
    status: int, message: str, field: str | None = None, **headers: str
) -> web.Response:
    """The API's error shape, ``{"error": message, "field": field}``."""
    return json_response({"error": message, "field": field}, status, headers or None)


def scrub_text(text: Any) -> Any:
    """``text`` redacted by :func:`~crackseg.utils.deployment.redact.redact_text`
    (non-strings pass through)."""
    return redact_text(text) if isinstance(text, str) else text


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


def host_dict(monitor: Any) -> dict[str, Any] | None:
    """The machine's latest resource use (the monitor's ``host_metrics()``), or None."""
    sample = getattr(monitor, "host_metrics", None)
    m = sample() if callable(sample) else None
    if m is None:
        return None
    # The machine has no process: the per-process keys do not belong to it.
    host = metrics_dict(m)
    del host["process_name"], host["process_count"], host["pids"]
    return host


def _public_record(meta: Any) -> dict[str, Any]:
    d: dict[str, Any] = meta.to_dict() if hasattr(meta, "to_dict") else dict(meta)
    for key in ("health_check_url", "deployment_url", "error_message", "rollback_reason"):
        d[key] = scrub_text(d.get(key))
    d.pop("extra", None)  # free-form: may hold anything, including credentials
    for change in d.get("state_history") or ():
        change["reason"] = scrub_text(change.get("reason"))
    return d


def query_param(
    request: web.Request, name: str, kind: type, default: Any = None, **bounds: float
) -> Any:
    """Query parameter ``name`` as ``kind`` (int or float) within ``ge``/``le`` bounds, or
    ``default`` when absent; :class:`ApiError` 400 naming the parameter otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ApiError(
            400, f"must be {'an integer' if kind is int else 'a number'}", name
        ) from None
    if not math.isfinite(value):
        raise ApiError(400, "must be a finite number", name)
    if "ge" in bounds and value < bounds["ge"]:
        raise ApiError(400, f"must be >= {bounds['ge']}", name)
    if "le" in bounds and value > bounds["le"]:
        raise ApiError(400, f"must be <= {bounds['le']}", name)
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; :class:`ApiError` 415/413/400 when it is not one."""
    if request.content_type != "application/json":
        raise ApiError(415, "send a JSON object with Content-Type: application/json", "body")
    try:
        # A client dripping its body would otherwise hold a busy connection for hours.
        async with asyncio.timeout(BODY_TIMEOUT_S):
            raw = await request.read()
        data = orjson.loads(raw)
    except TimeoutError:
        raise ApiError(408, f"body not received within {BODY_TIMEOUT_S:g} s", "body") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes", "body") from None
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {str(exc)[:160]}", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object", "body")
    field = _too_deep(data, MAX_JSON_DEPTH)
    if field is not None:
        # Refused before validation: wording an error about a deeply nested value recurses
        # once per level.
        raise ApiError(400, f"nested deeper than {MAX_JSON_DEPTH} levels", field)
    return data


def _too_deep(body: dict[str, Any], limit: int) -> str | None:
    """The field (dotted object keys, at most 4) under which ``body`` nests objects/lists
    more than ``limit`` levels, or None; iterative, so any depth is safe to examine."""
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(body, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            children = [
                (v, (*path, str(k)[:64]) if len(path) < 4 else path) for k, v in item.items()
            ]
        elif isinstance(item, list):
            children = [(v, path) for v in item]
        else:
            continue
        if children and depth >= limit:
            return ".".join(path) or "body"
        stack.extend((child, depth + 1, where) for child, where in children)
    return None


def location(*parts: str) -> str:
    """An API path from ``parts``, each percent-encoded whole (``a#b`` -> ``a%23b``), so an id
    holding ``/``, ``#``, ``?`` or ``%`` is followed back to itself."""
    return "/api/v1/" + "/".join(quote(p, safe="") for p in parts)


def validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> ApiError:
    """A 400 :class:`ApiError` naming the first field refused, worded as the library and the
    configuration file word it."""
    field, msg = problems(exc, model or DeploymentSpec)[0]
    return ApiError(400, msg, "body" if field == "<root>" else field)


#: Body of ``POST /api/v1/deployments``: the one model of a monitored deployment, with the
#: limits the monitor and the YAML file apply.
NewDeployment = DeploymentSpec


class NewSilence(BaseModel):
    """Body of ``POST /api/v1/silences``: match a deployment, an alert type, or both."""

    model_config = ConfigDict(extra="forbid", strict=True)
    deployment_id: str | None = Field(None, min_length=1, max_length=128)
    alert_type: str | None = Field(None, min_length=1, max_length=64)
    duration_seconds: float = Field(gt=0, le=366 * 86_400)
    comment: str = Field("", max_length=1_000)
    created_by: str = Field("api", max_length=128)


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
            "host": host_dict(ctx.monitor),
        }
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS, default=str)

    resp = web.Response(body=await asyncio.to_thread(build), content_type="application/json")
    # ~0.5 KiB a deployment and read every few seconds by the page: gzip when asked.
    resp.enable_compression()
    return resp


def _status_of(ctx: Ctx, dep_id: str) -> dict[str, Any]:
    try:
        status = ctx.monitor.get_deployment_status(dep_id)
    except KeyError:
        raise ApiError(404, f"deployment {dep_id!r} is not monitored", "deployment_id") from None
    return _public_status(status, ctx.uptime.uptime(dep_id))


async def _get_deployment(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return json_response(await asyncio.to_thread(_status_of, ctx, request.match_info["id"]))


async def _history(request: web.Request) -> web.Response:
    ctx, dep_id = request.app[CTX], request.match_info["id"]
    since = query_param(request, "since", float)
    until = query_param(request, "until", float)
    limit = query_param(request, "limit", int, 500, ge=1, le=10_000)
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

    return json_response(await asyncio.to_thread(read))


def _monitor_kwargs(spec: DeploymentSpec) -> dict[str, Any]:
    kwargs = spec.model_dump(exclude_none=True)
    if spec.thresholds is not None:
        kwargs["thresholds"] = spec.thresholds.as_dict()
    return kwargs


async def _add_deployment(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        spec = NewDeployment.model_validate(await json_body(request))
    except ValidationError as exc:
        raise validation_error(exc, DeploymentSpec) from None

    def add() -> dict[str, Any]:
        # monitored_deployments copies every configuration: keep it off the event loop.
        if spec.deployment_id in ctx.monitor.monitored_deployments:
            raise ApiError(409, "already monitored; DELETE it first", "deployment_id")
        try:
            ctx.monitor.add_deployment_monitoring(**_monitor_kwargs(spec))
        except ConfigError as exc:
            raise ApiError(400, exc.problem, exc.field) from None
        return _status_of(ctx, spec.deployment_id)

    status = await asyncio.to_thread(add)
    return json_response(status, 201, {"Location": location("deployments", spec.deployment_id)})


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
    return json_response({"alerts": alerts, "count": len(alerts)})


async def _alert_history(request: web.Request) -> web.Response:
    m = request.app[CTX].monitor
    dep_id = request.query.get("deployment_id") or None
    since = query_param(request, "since", float)
    limit = query_param(request, "limit", int, 200, ge=1, le=10_000)
    events = await asyncio.to_thread(m.get_alert_history, dep_id, since, limit)
    rows = [e.to_dict() for e in events]
    for r in rows:
        r["message"] = scrub_text(r.get("message"))
    return json_response({"events": rows, "count": len(rows)})


async def _deploys(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    artifact = request.query.get("artifact_id") or None
    limit = query_param(request, "limit", int, 50, ge=1, le=10_000)

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
    return json_response({"deployments": rows, "count": len(rows)})


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
    return json_response({"silences": rows, "count": len(rows)})


async def _add_silence(request: web.Request) -> web.Response:
    reg = _silences(request)
    try:
        spec = NewSilence.model_validate(await json_body(request))
    except ValidationError as exc:
        raise validation_error(exc, NewSilence) from None
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
    return json_response(silence, 201, {"Location": location("silences", str(silence.get("id")))})


async def _remove_silence(request: web.Request) -> web.Response:
    reg = _silences(request)
    if not await asyncio.to_thread(reg.remove, request.match_info["id"]):
        raise ApiError(404, "no such silence", "silence_id")
    return web.Response(status=204)


def add_api_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount the deployment, alert, deploy-record and silence handlers under ``api``."""
    router.add_get(f"{api}/deployments", _list_deployments)
    router.add_post(f"{api}/deployments", _add_deployment)
    router.add_get(f"{api}/deployments/{{id}}", _get_deployment)
    router.add_delete(f"{api}/deployments/{{id}}", _remove_deployment)
    router.add_get(f"{api}/deployments/{{id}}/history", _history)
    router.add_get(f"{api}/alerts", _alerts)
    router.add_get(f"{api}/alerts/history", _alert_history)
    router.add_get(f"{api}/deploys", _deploys)
    router.add_get(f"{api}/silences", _list_silences)
    router.add_post(f"{api}/silences", _add_silence)
    router.add_delete(f"{api}/silences/{{id}}", _remove_silence)
