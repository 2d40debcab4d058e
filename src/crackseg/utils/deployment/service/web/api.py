"""The JSON API behind :mod:`.app`: ``/api/v1`` deployments, history, alerts, deploy records
and silences, plus the helpers every API handler shares (errors, parameters, bodies, redaction).

Private: :func:`.app.create_app` mounts these handlers with :func:`add_api_routes`. Every
handler answers JSON; problems are raised as :class:`ApiError` and turned into RFC 9457
problem details (:mod:`.problems`) by the web middleware. Blocking monitor and
store calls run in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.monitoring.spec import DeploymentSpec
from crackseg.utils.deployment.monitoring.tracked import metrics_dict
from crackseg.utils.deployment.redact import redact_text
from crackseg.utils.deployment.service.metrics import UptimeTracker
from crackseg.utils.deployment.service.web.file_paths import refuse_unallowed_files
from crackseg.utils.deployment.service.web.models import (
    DeploymentPage,
    DeploymentRecordPage,
    DeploymentStatus,
    History,
)
from crackseg.utils.deployment.service.web.operations import (
    CURSOR,
    Op,
    Param,
    after_cursor,
    bad_cursor,
    encode_cursor,
    limit_param,
    mount,
    query_param,
    stamp,
)
from crackseg.utils.deployment.service.web.problems import ApiError, problem_response
from crackseg.utils.deployment.validation import problems

__all__ = [
    "API_OPS",
    "ARTIFACT",
    "BODY_ERRORS",
    "BODY_TIMEOUT_S",
    "CTX",
    "DEPLOYMENT_ID",
    "DEPLOYS_LIMIT",
    "DEP_ID",
    "HISTORY_LIMIT",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "PAGE_100",
    "SINCE",
    "STATUS",
    "UNTIL",
    "ApiError",
    "Ctx",
    "NewDeployment",
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
    #: Where files named by deployments added through the API may lie (resolved, see
    #: :mod:`.file_paths`); empty: no file paths through the API.
    allowed_file_dirs: tuple[str, ...] = ()


CTX = web.AppKey("crackseg_web", Ctx)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` as a JSON response (non-string keys and odd values stringified)."""
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str)
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


#: The API's one error answer (RFC 9457 problem details): see :mod:`.problems`.
error_response = problem_response


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
        stamp(change, "timestamp")
    return stamp(d, "start_time", "end_time")


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
    """A 400 :class:`ApiError` naming every field refused (the first as its ``field``),
    worded as the library and the configuration file word it."""
    found = problems(exc, model or DeploymentSpec)
    return ApiError.listing(400, [("body" if f == "<root>" else f, m) for f, m in found])


#: Body of ``POST /api/v1/deployments``: the one model of a monitored deployment, with the
#: limits the monitor and the YAML file apply.
NewDeployment = DeploymentSpec


def _stamped_status(d: dict[str, Any]) -> dict[str, Any]:
    stamp(d, "last_check")
    if isinstance(d.get("resource_metrics"), dict):
        stamp(d["resource_metrics"], "timestamp")
    for a in d.get("active_alerts") or ():
        stamp(a, "started_at")
    return d


STATUS = Param("status", "string", "only deployments with this health status",
               enum=("healthy", "degraded", "unhealthy", "unknown"))  # fmt: skip
DEPLOYMENT_ID = Param("deployment_id", "string", "only this deployment's")
SINCE = Param("since", "time", "from this time on (Unix seconds or RFC 3339)")
UNTIL = Param("until", "time", "up to this time (Unix seconds or RFC 3339)")
ARTIFACT = Param("artifact_id", "string", "only deployments of this artifact")
PAGE_100 = limit_param(100)


async def _list_deployments(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    wanted, limit, cursor = STATUS.read(request), PAGE_100.read(request), CURSOR.read(request)

    def build() -> bytes:
        statuses = ctx.monitor.get_all_deployment_statuses()
        chosen = [
            (dep_id, s)
            for dep_id, s in sorted(statuses.items())
            if wanted is None or s.get("health_status") == wanted
        ]
        page, next_cursor = after_cursor(chosen, lambda row: row[0], cursor, limit)
        rows = [_stamped_status(_public_status(s, ctx.uptime.uptime(d))) for d, s in page]
        host = host_dict(ctx.monitor)
        body = {
            "deployments": rows,
            "count": len(rows),
            "next_cursor": next_cursor,
            "monitoring_active": bool(ctx.monitor.monitoring_active),
            "host": stamp(host, "timestamp") if host is not None else None,
        }
        body.update(stamp({"generated_at": time.time()}, "generated_at"))
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
    return _stamped_status(_public_status(status, ctx.uptime.uptime(dep_id)))


async def _get_deployment(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return json_response(await asyncio.to_thread(_status_of, ctx, request.match_info["id"]))


HISTORY_LIMIT = limit_param(500, 10_000)


def _older(read: Callable[..., list[Any]], before: Any, until: float | None, limit: int) -> Any:
    """The newest ``limit`` rows of one series up to ``until`` and before ``before`` (a
    cursor's position, exclusive; None on a first page, False once the series ended), and
    the next position."""
    if before is False:
        return [], False
    bound = until if before is None else before if until is None else min(before, until)
    # One row more than asked tells whether an older page exists; past a cursor, the row at
    # its position (the previous page's oldest) comes back too.
    extra = 1 if before is None else 2
    rows = [r for r in read(bound, limit + extra) if before is None or r.timestamp < before]
    more = len(rows) > limit
    rows = rows[-limit:]
    return rows, rows[0].timestamp if more else False


def _history_cursor(cursor: Any) -> dict[str, Any]:
    if cursor is None:
        return {"h": None, "r": None}
    ok = isinstance(cursor, dict) and set(cursor) == {"h", "r"}
    if not ok or not all(v is False or isinstance(v, float | int) for v in cursor.values()):
        raise bad_cursor()
    return dict(cursor)


async def _history(request: web.Request) -> web.Response:
    ctx, dep_id = request.app[CTX], request.match_info["id"]
    since, until = SINCE.read(request), UNTIL.read(request)
    limit, cursor = HISTORY_LIMIT.read(request), CURSOR.read(request)
    if since is not None and until is not None and until < since:
        raise ApiError(400, "must be >= since", "until")
    pos = _history_cursor(cursor)

    def read() -> dict[str, Any]:
        _status_of(ctx, dep_id)  # 404 unless monitored
        m = ctx.monitor
        health, h_next = _older(
            lambda u, n: m.get_health_history(dep_id, since=since, until=u, limit=n),
            pos["h"], until, limit,
        )  # fmt: skip
        res, r_next = _older(
            lambda u, n: m.get_resource_history(dep_id, since=since, until=u, limit=n),
            pos["r"], until, limit,
        )  # fmt: skip
        rows = [stamp(r.to_dict(), "timestamp") for r in health]
        for r in rows:
            r["error_message"] = scrub_text(r.get("error_message"))
        more = h_next is not False or r_next is not False
        return {
            "deployment_id": dep_id,
            "health": rows,
            "resources": [stamp(r.to_dict(), "timestamp") for r in res],
            "next_cursor": encode_cursor({"h": h_next, "r": r_next}) if more else None,
        }

    return json_response(await asyncio.to_thread(read))


def _monitor_kwargs(spec: DeploymentSpec) -> dict[str, Any]:
    kwargs = spec.model_dump(exclude_none=True)
    if spec.thresholds is not None:
        kwargs["thresholds"] = spec.thresholds.as_dict()
    return kwargs


async def _add_deployment(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await json_body(request)
    # Before the model, whose validation looks at the files: nothing outside is touched.
    refuse_unallowed_files(body, ctx.allowed_file_dirs)
    try:
        spec = NewDeployment.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc, DeploymentSpec) from None

    def add() -> dict[str, Any]:
        # monitored_deployments copies every configuration: keep it off the event loop.
        if spec.deployment_id in ctx.monitor.monitored_deployments:
            raise ApiError(409, "already monitored; DELETE it first", "deployment_id")
        try:
            ctx.monitor.add_deployment_monitoring(**_monitor_kwargs(spec))
        except ConfigError as exc:
            raise ApiError.listing(400, exc.problems) from None
        return _status_of(ctx, spec.deployment_id)

    status = await asyncio.to_thread(add)
    return json_response(status, 201, {"Location": location("deployments", spec.deployment_id)})


async def _remove_deployment(request: web.Request) -> web.Response:
    ctx, dep_id = request.app[CTX], request.match_info["id"]
    if not await asyncio.to_thread(ctx.monitor.remove_deployment_monitoring, dep_id):
        raise ApiError(404, f"deployment {dep_id!r} is not monitored", "deployment_id")
    ctx.uptime.forget(dep_id)
    return web.Response(status=204)


DEPLOYS_LIMIT = limit_param(50, 10_000)


async def _deploys(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    artifact = ARTIFACT.read(request)
    limit, cursor = DEPLOYS_LIMIT.read(request), CURSOR.read(request)

    def read() -> dict[str, Any]:
        if ctx.orchestrator is not None:
            records = list(ctx.orchestrator.get_deployment_history())
        else:
            records = list(ctx.monitor.store.deployment_records())
        if artifact is not None:
            records = [r for r in records if getattr(r, "artifact_id", None) == artifact]
        records.sort(key=_record_key, reverse=True)
        page, next_cursor = after_cursor(records, _record_key, cursor, limit, newest_first=True)
        rows = [_public_record(r) for r in page]
        return {"rollouts": rows, "count": len(rows), "next_cursor": next_cursor}

    return json_response(await asyncio.to_thread(read))


def _record_key(r: Any) -> tuple[float, str]:
    # A rollout's id is unique; its start orders the list.
    return (float(getattr(r, "start_time", 0.0) or 0.0), str(r.deployment_id))


DEP_ID = (("id", "the deployment's id, percent-encoded"),)
#: What a request with a body may be refused with.
BODY_ERRORS = (400, 408, 413, 415)

#: The deployment and deploy-record routes (paths below ``/api/v1``).
API_OPS: tuple[Op, ...] = (
    Op("GET", "/deployments", _list_deployments, "Monitored deployments, one page by id",
       "deployments", {200: DeploymentPage}, (STATUS, PAGE_100, CURSOR), errors=(400,)),
    Op("POST", "/deployments", _add_deployment, "Start monitoring a deployment", "deployments",
       {201: DeploymentStatus}, body=NewDeployment, errors=(*BODY_ERRORS, 409), write=True),
    Op("GET", "/deployments/{id}", _get_deployment, "One monitored deployment", "deployments",
       {200: DeploymentStatus}, path_params=DEP_ID),
    Op("DELETE", "/deployments/{id}", _remove_deployment, "Stop monitoring a deployment",
       "deployments", {204: None}, write=True, path_params=DEP_ID),
    Op("GET", "/deployments/{id}/history", _history,
       "Checks and resource samples of one deployment, oldest first", "deployments",
       {200: History}, (SINCE, UNTIL, HISTORY_LIMIT, CURSOR), errors=(400,), path_params=DEP_ID),
    Op("GET", "/rollouts", _deploys, "Rollout records, newest first", "rollouts",
       {200: DeploymentRecordPage}, (ARTIFACT, DEPLOYS_LIMIT, CURSOR), errors=(400,)),
)  # fmt: skip


def add_api_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount :data:`API_OPS` under ``api``."""
    mount(router, api, API_OPS)
