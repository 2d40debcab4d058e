"""Alerts through the API: those firing now, their history, and silences.

Private: :func:`.app.create_app` mounts these with :func:`add_alert_routes`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.service.web.api import (
    BODY_ERRORS,
    CTX,
    DEPLOYMENT_ID,
    PAGE_100,
    SINCE,
    json_body,
    json_response,
    location,
    scrub_text,
    validation_error,
)
from crackseg.utils.deployment.service.web.models import (
    AlertEventPage,
    AlertPage,
    Silence,
    SilencePage,
)
from crackseg.utils.deployment.service.web.operations import (
    CURSOR,
    Op,
    after_cursor,
    limit_param,
    mount,
    newest_page,
    stamp,
)
from crackseg.utils.deployment.service.web.problems import ApiError

__all__ = ["ALERT_OPS", "PAGE_200", "NewSilence", "add_alert_routes"]


class NewSilence(BaseModel):
    """Body of ``POST /api/v1/silences``: match a deployment, an alert type, or both."""

    model_config = ConfigDict(extra="forbid", strict=True)
    deployment_id: str | None = Field(None, min_length=1, max_length=128)
    alert_type: str | None = Field(None, min_length=1, max_length=64)
    duration_seconds: float = Field(gt=0, le=366 * 86_400)
    comment: str = Field("", max_length=1_000)
    created_by: str = Field("api", max_length=128)


async def _alerts(request: web.Request) -> web.Response:
    m = request.app[CTX].monitor
    dep_id = DEPLOYMENT_ID.read(request)
    limit, cursor = PAGE_100.read(request), CURSOR.read(request)

    def read() -> dict[str, Any]:
        # Statuses, not get_active_alerts(): each alert must name its deployment.
        statuses = m.get_all_deployment_statuses()
        alerts = [
            {**a, "deployment_id": d, "message": scrub_text(a.get("message"))}
            for d, s in sorted(statuses.items())
            if dep_id is None or d == dep_id
            for a in sorted(s.get("active_alerts") or (), key=lambda a: str(a.get("alert_type")))
        ]
        page, next_cursor = after_cursor(
            alerts, lambda a: (a["deployment_id"], str(a.get("alert_type"))), cursor, limit
        )
        rows = [stamp(a, "started_at") for a in page]
        return {"alerts": rows, "count": len(rows), "next_cursor": next_cursor}

    return json_response(await asyncio.to_thread(read))


PAGE_200 = limit_param(200)


def _event_key(e: Any) -> tuple[float, str, str, str, float, bool]:
    # Unique per transition (a repeat shares all else with its firing but not the time).
    return (e.timestamp, e.deployment_id, e.alert_type, e.state, e.started_at, e.repeat)


async def _alert_history(request: web.Request) -> web.Response:
    m = request.app[CTX].monitor
    dep_id, since = DEPLOYMENT_ID.read(request), SINCE.read(request)
    limit, cursor = PAGE_200.read(request), CURSOR.read(request)

    def read() -> dict[str, Any]:
        events, next_cursor = newest_page(
            lambda n: m.get_alert_history(dep_id, since, n), _event_key, limit, cursor
        )
        rows = [stamp(e.to_dict(), "started_at", "timestamp", "resolved_at") for e in events]
        for r in rows:
            r["message"] = scrub_text(r.get("message"))
        return {"events": rows, "count": len(rows), "next_cursor": next_cursor}

    return json_response(await asyncio.to_thread(read))


def _silences(request: web.Request) -> Any:
    reg = request.app[CTX].silences
    if reg is None:
        raise ApiError(404, "silences are not enabled on this server", None)
    return reg


def _silence_dict(s: Any) -> dict[str, Any]:
    d: dict[str, Any] = s.to_dict() if hasattr(s, "to_dict") else dict(s)
    return stamp(d, "starts_at", "ends_at")


async def _list_silences(request: web.Request) -> web.Response:
    reg = _silences(request)
    limit, cursor = PAGE_100.read(request), CURSOR.read(request)
    every = sorted(await asyncio.to_thread(reg.list), key=lambda s: str(s.id))
    page, next_cursor = after_cursor(every, lambda s: str(s.id), cursor, limit)
    rows = [_silence_dict(s) for s in page]
    return json_response({"silences": rows, "count": len(rows), "next_cursor": next_cursor})


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
        raise ApiError.listing(400, exc.problems) from None
    return json_response(silence, 201, {"Location": location("silences", str(silence.get("id")))})


async def _remove_silence(request: web.Request) -> web.Response:
    reg = _silences(request)
    if not await asyncio.to_thread(reg.remove, request.match_info["id"]):
        raise ApiError(404, "no such silence", "silence_id")
    return web.Response(status=204)


#: The alert and silence routes (paths below ``/api/v1``).
ALERT_OPS: tuple[Op, ...] = (
    Op("GET", "/alerts", _alerts, "Alerts firing now", "alerts", {200: AlertPage},
       (DEPLOYMENT_ID, PAGE_100, CURSOR), errors=(400,)),
    Op("GET", "/alerts/history", _alert_history, "Alert transitions, oldest first (pages go "
       "back from the newest)", "alerts", {200: AlertEventPage},
       (DEPLOYMENT_ID, SINCE, PAGE_200, CURSOR), errors=(400,)),
    Op("GET", "/silences", _list_silences, "Active silences, one page by id", "silences",
       {200: SilencePage}, (PAGE_100, CURSOR), errors=(400,)),
    Op("POST", "/silences", _add_silence, "Silence a deployment, an alert type or both",
       "silences", {201: Silence}, body=NewSilence, errors=BODY_ERRORS, write=True),
    Op("DELETE", "/silences/{id}", _remove_silence, "End a silence", "silences", {204: None},
       write=True, path_params=(("id", "the silence's id"),)),
)  # fmt: skip


def add_alert_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount :data:`ALERT_OPS` under ``api``."""
    mount(router, api, ALERT_OPS)
