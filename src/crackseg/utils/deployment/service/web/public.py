"""The public status view: ``/status`` (a page) and ``/status.json`` (its data), no token.

Only deployments configured ``public: true`` appear, and of each only what a company shows
its users: group, name, status, uptime over 24 h and 7 d, the heartbeat of its last checks
(time and status) and the titles and times of its availability incidents
(:data:`PUBLIC_TITLES`). It is one document, bounded: at most :data:`MAX_DEPLOYMENTS`
deployments (named groups first, then by id) and the :data:`MAX_INCIDENTS` newest incidents
of those; ``deployments_total`` and ``incidents_total`` count them all, ``capped`` says in
words what was left out (null when nothing was), and ``overall`` judges every public
deployment, listed or not. The JSON is built from an
allow-list, field by field: no URL, error text, response time, host or process figure,
alert message or rollout detail can reach it, whatever the monitor's statuses grow to hold.
Both stay open when ``protect_reads`` is on (the private page and API keep the token).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from crackseg.utils.deployment.service.web.api import CTX, Ctx
from crackseg.utils.deployment.service.web.incidents import MAX_EVENTS, episodes
from crackseg.utils.deployment.service.web.operations import Op, Param, mount
from crackseg.utils.deployment.service.web.page_models import PublicStatus
from crackseg.utils.deployment.service.web.ranges import heartbeats

__all__ = [
    "BEATS",
    "INCIDENT_DAYS",
    "MAX_DEPLOYMENTS",
    "MAX_INCIDENTS",
    "PUBLIC_OPS",
    "PUBLIC_TITLES",
    "VIEW_TTL",
    "add_public_routes",
    "public_view",
]

#: How far back the public view lists incidents (days).
INCIDENT_DAYS = 7
#: Most deployments the public view lists (at 200 beats each, about 1.5 MiB of JSON).
MAX_DEPLOYMENTS = 250
#: Most incidents it lists, newest first.
MAX_INCIDENTS = 50
_STATIC = Path(__file__).parent.parent / "static"
_OVERALL = ("unhealthy", "degraded", "unknown")
_STATUSES = frozenset({"healthy", "degraded", "unhealthy", "unknown"})
#: The alerts users see, in their words; resource alerts (CPU, memory) and custom rules are
#: the operators' business and stay off the public view.
PUBLIC_TITLES = {
    "health_check_failed": "Service unavailable",
    "high_error_rate": "Elevated error rate",
    "high_response_time": "Slow responses",
    "flapping": "Intermittent availability",
}


def _status_word(value: Any) -> str:
    # A status is one of four words; anything else is shown as unknown, never passed on.
    s = str(value)
    return s if s in _STATUSES else "unknown"


def _severity(value: Any) -> str:
    s = str(value)
    return s if s in ("info", "warning", "critical") else "warning"


def _group_order(group: str) -> tuple[bool, str]:
    # Named groups first, alphabetically; ungrouped deployments last.
    return (group == "", group.lower())


def public_view(ctx: Ctx, beats: int, now: float | None = None) -> dict[str, Any]:
    """The public view's data (see the module docstring): ``{"generated_at", "overall",
    "groups": [{"name", "deployments": [...]}], "incidents": [...], "deployments_total",
    "incidents_total", "capped"}``."""
    now = time.time() if now is None else now
    statuses = ctx.monitor.get_all_deployment_statuses()
    public = [d for d, s in statuses.items() if s.get("public") is True]
    public.sort(key=lambda d: (_group_order(str(statuses[d].get("group") or "")), d))
    ids = sorted(public[:MAX_DEPLOYMENTS])
    uptime = ctx.uptime.uptime_many(ids) if ids else {"24h": [], "7d": []}
    hb = heartbeats(ctx.monitor, ids, beats, errors=False)
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, dep_id in enumerate(ids):
        s = statuses[dep_id]
        beat = hb.get(dep_id) or {"t": [], "s": []}
        groups.setdefault(str(s.get("group") or ""), []).append(
            {
                "id": dep_id,
                "status": _status_word(s.get("health_status")),
                "uptime_24h_percent": uptime["24h"][i],
                "uptime_7d_percent": uptime["7d"][i],
                "heartbeat": {"t": beat["t"], "s": [_status_word(x) for x in beat["s"]]},
            }
        )
    shown = set(ids)
    since = now - INCIDENT_DAYS * 86_400.0
    events = [
        e
        for e in ctx.monitor.get_alert_history(None, since - 86_400.0, MAX_EVENTS)
        if e.deployment_id in shown and e.alert_type in PUBLIC_TITLES
    ]
    every = [
        {
            "deployment_id": i["deployment_id"],
            "title": PUBLIC_TITLES[i["alert_type"]],
            "severity": _severity(i["severity"]),
            "start": i["start"],
            "end": i["end"],
        }
        for i in episodes(events, now)
        if i["end"] is None or i["end"] >= since
    ]
    worst = {_status_word(statuses[d].get("health_status")) for d in public}
    overall = next((s for s in _OVERALL if s in worst), "healthy") if worst else "unknown"
    return {
        "generated_at": now,
        "overall": overall,
        "groups": [
            {"name": name or None, "deployments": groups[name]}
            for name in sorted(groups, key=_group_order)
        ],
        "incidents": every[:MAX_INCIDENTS],
        "deployments_total": len(public),
        "incidents_total": len(every),
        "capped": _capped(len(ids), len(public), min(len(every), MAX_INCIDENTS), len(every)),
    }


def _capped(listed: int, total: int, incidents: int, incidents_total: int) -> str | None:
    """What the view left out, in words; None when it lists everything."""
    left_out = []
    if listed < total:
        left_out.append(f"the first {listed} of {total} public deployments")
    if incidents < incidents_total:
        left_out.append(f"the newest {incidents} of {incidents_total} incidents")
    return "listing " + " and ".join(left_out) if left_out else None


async def _status_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(_STATIC / "status.html", headers={"Cache-Control": "no-cache"})


#: Seconds one built view is served again: the public view needs no token, so a crowd (or a
#: loop) asking for it costs one build per interval, not one per request.
VIEW_TTL = 5.0
# Keyed by the app's uptime tracker: one per app, hashable (the Ctx dataclass is not), and
# gone with the app.
_BUILT: weakref.WeakKeyDictionary[Any, dict[int, tuple[float, bytes]]] = weakref.WeakKeyDictionary()
_BUILT_LOCK = threading.Lock()


def _view_bytes(ctx: Ctx, beats: int) -> bytes:
    now = time.monotonic()
    with _BUILT_LOCK:
        hit = _BUILT.setdefault(ctx.uptime, {}).get(beats)
        if hit is not None and now - hit[0] < VIEW_TTL:
            return hit[1]
    body = orjson.dumps(public_view(ctx, beats), option=orjson.OPT_NON_STR_KEYS, default=str)
    with _BUILT_LOCK:
        _BUILT.setdefault(ctx.uptime, {})[beats] = (now, body)
    return body


async def _status_json(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    beats = BEATS.read(request)
    body = await asyncio.to_thread(_view_bytes, ctx, beats)
    resp = web.Response(
        body=body,
        content_type="application/json",
        headers={"Cache-Control": f"public, max-age={int(VIEW_TTL)}"},
    )
    resp.enable_compression()
    return resp


BEATS = Param("beats", "integer", "checks per deployment's heartbeat", 60, 1, 200)
#: The public view's routes (from the server root).
PUBLIC_OPS: tuple[Op, ...] = (
    Op("GET", "//status", _status_page, "Public status view (HTML): public deployments only, "
       "no token", "public", {200: None}, media_type="text/html"),
    Op("GET", "//status.json", _status_json, "The public view's data: allow-listed fields of "
       "public deployments only, no token", "public", {200: PublicStatus}, (BEATS,),
       errors=(400,)),
)  # fmt: skip


def add_public_routes(router: web.UrlDispatcher) -> None:
    """Mount ``/status`` and ``/status.json``."""
    mount(router, "", PUBLIC_OPS)
