"""Maintenance windows for the page: ``GET /api/v1/maintenance``.

Answers one page of windows in their configured order, ``{"windows": [...], "count",
"next_cursor"}`` (``limit``, default 100, and ``cursor`` as every list of the API): each
window's ``name``, the ``deployments`` it covers (ids or globs; empty: all), its schedule
(weekly ``days`` with ``start``-``end`` local times in ``timezone``, or one-off
``starts_at``-``ends_at``), whether it is ``active`` now, and ``holding``: the first
:data:`MAX_HOLDING` deployments (by id) it silences at this moment, ``holding_count`` of them
in all. Windows come from the ``maintenance`` callable given to :func:`.app.create_app` (the
service passes its current schedule, which a reload replaces); without one the list is empty.

Private: :func:`.app.create_app` mounts it with :func:`add_maintenance_routes`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from crackseg.utils.deployment.service.web.api import CTX, PAGE_100, json_response
from crackseg.utils.deployment.service.web.operations import CURSOR, Op, after_cursor, mount
from crackseg.utils.deployment.service.web.page_models import MaintenanceList

__all__ = ["DAY_NAMES", "MAINTENANCE_OPS", "MAX_HOLDING", "add_maintenance_routes", "window_dict"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Most deployment ids one window's ``holding`` lists (an all-deployments window over a
#: large fleet would otherwise list every id); ``holding_count`` says how many in all.
MAX_HOLDING = 100


def window_dict(w: Any, deployment_ids: list[str], now: float) -> dict[str, Any]:
    """One :class:`~...monitoring.suppression.MaintenanceWindow` as the API shows it."""
    active = bool(w.active(now))
    holding = [d for d in deployment_ids if w.applies_to(d)] if active else []
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
        "holding": holding[:MAX_HOLDING],
        "holding_count": len(holding),
    }


async def _maintenance(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    source = getattr(ctx, "maintenance", None)
    limit, cursor = PAGE_100.read(request), CURSOR.read(request)

    def read() -> tuple[list[dict[str, Any]], str | None]:
        schedule = source() if callable(source) else source
        windows = list(enumerate(getattr(schedule, "windows", None) or ()))
        # The keyset is a window's place in the schedule (names are optional and may repeat).
        page, more = after_cursor(windows, lambda iw: iw[0], cursor, limit)
        if not page:
            return [], more
        ids = sorted(ctx.monitor.get_all_deployment_statuses())
        now = time.time()
        return [window_dict(w, ids, now) for _, w in page], more

    rows, more = await asyncio.to_thread(read)
    return json_response({"windows": rows, "count": len(rows), "next_cursor": more})


#: The maintenance route (path below ``/api/v1``).
MAINTENANCE_OPS: tuple[Op, ...] = (
    Op("GET", "/maintenance", _maintenance, "Maintenance windows: schedule, whether open now, "
       "and the deployments each holds back now, one page in schedule order", "alerts",
       {200: MaintenanceList}, (PAGE_100, CURSOR), errors=(400,)),
)  # fmt: skip


def add_maintenance_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount ``{api}/maintenance``."""
    mount(router, api, MAINTENANCE_OPS)
