"""Incidents: alert episodes built from the alert history, for the page's timeline.

``GET /api/v1/incidents?deployment_id=&since=&until=&limit=`` answers ``{"incidents": [...],
"count"}``, newest first. An incident is one alert of one deployment from its firing to its
resolve (``end`` null while it fires): ``deployment_id``, ``alert_type``, ``title``,
``severity`` (the worst seen), ``start``, ``end``, ``duration_seconds``, ``message`` (the
first, redacted), ``repeats`` (reminders sent while it fired), ``held_by`` (the silences
and maintenance windows that held its notifications, from the events' ``suppressed_reason``)
and ``notified`` (the handlers its firing, reminders and resolve were sent to, first sent
first, from the events' ``notified``; empty when nothing was sent).
Events whose firing fell out of the bounded history still make an incident, starting at the
event's ``started_at``.

Private: :func:`.app.create_app` mounts the handler with :func:`add_incident_routes`; the
public view (:mod:`.public`) projects :func:`episodes` to titles and times only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from crackseg.utils.deployment.service.web.api import (
    CTX,
    DEPLOYMENT_ID,
    PAGE_100,
    SINCE,
    UNTIL,
    ApiError,
    json_response,
    scrub_text,
)
from crackseg.utils.deployment.service.web.operations import (
    CURSOR,
    Op,
    after_cursor,
    mount,
)
from crackseg.utils.deployment.service.web.page_models import IncidentList

__all__ = ["INCIDENT_OPS", "MAX_EVENTS", "add_incident_routes", "episodes", "title"]

#: Alert events read for one answer: the history store bounds them too.
MAX_EVENTS = 10_000
_SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def title(alert_type: str) -> str:
    """``high_response_time`` as ``High response time``."""
    words = str(alert_type).replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "Alert"


def episodes(events: Iterable[Any], now: float | None = None) -> list[dict[str, Any]]:
    """Alert events (oldest first) grouped into incidents, newest first (module docstring)."""
    now = time.time() if now is None else now
    found: dict[tuple[str, str, float], dict[str, Any]] = {}
    for ev in events:
        key = (ev.deployment_id, ev.alert_type, float(ev.started_at))
        inc = found.get(key)
        if inc is None:
            inc = found[key] = {
                "deployment_id": ev.deployment_id,
                "alert_type": ev.alert_type,
                "title": title(ev.alert_type),
                "severity": ev.severity,
                "start": float(ev.started_at),
                "end": None,
                "duration_seconds": None,
                "message": scrub_text(ev.message),
                "repeats": 0,
                "held_by": [],
                "notified": [],
            }
        if _SEVERITY.get(ev.severity, 0) > _SEVERITY.get(inc["severity"], 0):
            inc["severity"] = ev.severity
        if ev.repeat:
            inc["repeats"] += 1
        reason = scrub_text(ev.suppressed_reason)
        if reason and reason not in inc["held_by"]:
            inc["held_by"].append(reason)
        for key in getattr(ev, "notified", ()) or ():
            told = scrub_text(str(key))
            if told not in inc["notified"]:
                inc["notified"].append(told)
        if ev.state == "resolved":
            inc["end"] = float(ev.resolved_at if ev.resolved_at is not None else ev.timestamp)
    for inc in found.values():
        inc["duration_seconds"] = round((inc["end"] or now) - inc["start"], 3)
    return sorted(found.values(), key=_incident_key, reverse=True)


def _incident_key(i: dict[str, Any]) -> tuple[float, str, str]:
    # What makes an incident one (its grouping key above): a unique, stable keyset.
    return (i["start"], i["deployment_id"], i["alert_type"])


async def _incidents(request: web.Request) -> web.Response:
    m = request.app[CTX].monitor
    dep_id, since, until = DEPLOYMENT_ID.read(request), SINCE.read(request), UNTIL.read(request)
    limit, cursor = PAGE_100.read(request), CURSOR.read(request)
    if since is not None and until is not None and until < since:
        raise ApiError(400, "must be >= since", "until")

    def read() -> list[dict[str, Any]]:
        # Read from before ``since``: an incident that began earlier and is still open (or
        # ended within the window) belongs to it too; events of a day earlier are enough.
        start = None if since is None else since - 86_400.0
        found = episodes(m.get_alert_history(dep_id, start, MAX_EVENTS))
        return [
            i
            for i in found
            if (since is None or (i["end"] is None or i["end"] >= since))
            and (until is None or i["start"] <= until)
        ]

    every = await asyncio.to_thread(read)
    rows, more = after_cursor(every, _incident_key, cursor, limit, newest_first=True)
    return json_response({"incidents": rows, "count": len(rows), "next_cursor": more})


#: The incidents route (path below ``/api/v1``).
INCIDENT_OPS: tuple[Op, ...] = (
    Op("GET", "/incidents", _incidents, "Alert episodes (firing to resolve), newest first",
       "alerts", {200: IncidentList}, (DEPLOYMENT_ID, SINCE, UNTIL, PAGE_100, CURSOR), errors=(400,)),
)  # fmt: skip


def add_incident_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount ``{api}/incidents``."""
    mount(router, api, INCIDENT_OPS)
