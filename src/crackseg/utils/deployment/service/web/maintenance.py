"""Maintenance windows for the page: ``GET /api/v1/maintenance``.

Answers ``{"windows": [...], "count"}``: each window's ``name``, the ``deployments`` it covers
(ids or globs; empty: all), its schedule (weekly ``days`` with ``start``-``end`` local times
in ``timezone``, or one-off ``starts_at``-``ends_at``), whether it is ``active`` now, and
``holding``: the deployments it silences at this moment. Windows come from the ``maintenance``
callable given to :func:`.app.create_app` (the service passes its current schedule, which a
reload replaces); without one the list is empty.

Private: :func:`.app.create_app` mounts it with :func:`add_maintenance_routes`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from crackseg.utils.deployment.service.web.api import CTX, json_response
from crackseg.utils.deployment.service.web.operations import Op, mount
from crackseg.utils.deployment.service.web.page_models import MaintenanceList

__all__ = ["DAY_NAMES", "MAINTENANCE_OPS", "add_maintenance_routes", "window_dict"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def window_dict(w: Any, deployment_ids: list[str], now: float) -> dict[str, Any]:
    """One :class:`~...monitoring.suppression.MaintenanceWindow` as the API shows it."""
    active = bool(w.active(now))
    return {
        "name": w.name,
        "deployments": list(w.deployments),
        "days": [DAY_NAMES[d] for d in sorted(w.days)] if w.starts_at is None else None,
        "start": w.start.strftime("%H:%M") if w.start is not None else None,
        "end": w.end.strftime("%H:%M") if w.end is not None else None,
        "timezone": w.timezone,
        "starts_at": w.starts_at,
        "ends_at": w.ends_at,
        "active": active,
        "holding": [d for d in deployment_ids if w.applies_to(d)] if active else [],
    }


async def _maintenance(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    source = getattr(ctx, "maintenance", None)

    def read() -> list[dict[str, Any]]:
        schedule = source() if callable(source) else source
        windows = list(getattr(schedule, "windows", None) or ())
        if not windows:
            return []
        ids = sorted(ctx.monitor.get_all_deployment_statuses())
        now = time.time()
        return [window_dict(w, ids, now) for w in windows]

    rows = await asyncio.to_thread(read)
    return json_response({"windows": rows, "count": len(rows)})


#: The maintenance route (path below ``/api/v1``).
MAINTENANCE_OPS: tuple[Op, ...] = (
    Op("GET", "/maintenance", _maintenance, "Maintenance windows: schedule, whether open now, "
       "and the deployments each holds back now", "alerts", {200: MaintenanceList}),
)  # fmt: skip


def add_maintenance_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount ``{api}/maintenance``."""
    mount(router, api, MAINTENANCE_OPS)
