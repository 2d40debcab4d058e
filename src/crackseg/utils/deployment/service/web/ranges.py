"""Time on the status page: heartbeat bars and range charts, shaped on the server.

- ``GET /api/v1/heartbeats?limit=N``: every deployment's last ``N`` checks (1-200, default
  60) as compact columns ``{"t": [...], "s": [...], "r": [...], "e": [...]}`` (time, status,
  response time in ms, redacted error or null), oldest first.
- ``GET /api/v1/deployments/{id}/range?range=24h``: the deployment's checks over ``1h``,
  ``24h``, ``7d`` or ``30d`` cut into at most :data:`MAX_BUCKETS` equal buckets, each with
  its count, response time min/max/mean/p50/p95/p99 and the shares of healthy, degraded and
  unhealthy checks. An empty bucket says ``count: 0`` and null figures: no data is never
  drawn as a value. The store is read once per request (``health_points`` when the store
  has it), so a 30-day range of a 10 s check is ~260,000 rows read and ~30 KiB sent.

Private: :func:`.web.create_app` mounts these with :func:`add_range_routes`.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from crackseg.utils.deployment.service.web.api import (
    CTX,
    ApiError,
    json_response,
    query_param,
    scrub_text,
)

__all__ = [
    "MAX_BUCKETS",
    "RANGES",
    "add_range_routes",
    "downsample",
    "health_points",
    "heartbeats",
]

#: Range name -> (seconds covered, buckets).
RANGES: dict[str, tuple[float, int]] = {
    "1h": (3_600.0, 60),
    "24h": (86_400.0, 288),
    "7d": (7 * 86_400.0, 336),
    "30d": (30 * 86_400.0, 360),
}
MAX_BUCKETS = max(n for _, n in RANGES.values())
_PERCENTILES = ((50, "p50"), (95, "p95"), (99, "p99"))
_SHARES = (("healthy", "up"), ("degraded", "degraded"), ("unhealthy", "down"))


def health_points(
    store: Any, deployment_id: str, since: float, until: float
) -> tuple[list[float], list[float], list[str]]:
    """Timestamps, response times and statuses in [since, until], oldest first; from the
    store's ``health_points`` when it has one, else from its ``health_history``."""
    fast = getattr(store, "health_points", None)
    if fast is not None:
        got: tuple[list[float], list[float], list[str]] = fast(deployment_id, since, until)
        return got
    rows = store.health_history(deployment_id, since=since, until=until)
    return (
        [r.timestamp for r in rows],
        [r.response_time_ms for r in rows],
        [str(r.status) for r in rows],
    )


def _rank(sorted_values: Sequence[float], pct: int) -> float:
    # Nearest rank: a value that was measured, never an interpolation between two.
    return sorted_values[max(0, math.ceil(pct / 100 * len(sorted_values)) - 1)]


def downsample(
    ts: Sequence[float],
    rt: Sequence[float],
    status: Sequence[str],
    since: float,
    until: float,
    buckets: int,
) -> dict[str, list[Any]]:
    """Columns of ``buckets`` equal buckets over [since, until) of rows sorted by time.

    Keys: ``t`` (bucket start), ``count``, ``min``, ``max``, ``mean``, ``p50``, ``p95``,
    ``p99`` (response time, ms, over the rows with a finite one), ``up``, ``degraded``,
    ``down`` (shares of the bucket's checks, 0-1). Figures of an empty bucket are None.
    """
    if buckets < 1 or until <= since:
        raise ValueError("need at least one bucket over a non-empty span")
    width = (until - since) / buckets
    keys = ["t", "count", "min", "max", "mean", *(k for _, k in _PERCENTILES)]
    out: dict[str, list[Any]] = {k: [] for k in keys + [k for _, k in _SHARES]}
    lo = bisect.bisect_left(ts, since)
    for i in range(buckets):
        start = since + i * width
        hi = bisect.bisect_left(ts, start + width, lo) if i < buckets - 1 else len(ts)
        hi = max(hi, lo)
        out["t"].append(round(start, 3))
        n = hi - lo
        out["count"].append(n)
        times = sorted(v for v in rt[lo:hi] if v is not None and math.isfinite(v))
        if times:
            out["min"].append(round(times[0], 3))
            out["max"].append(round(times[-1], 3))
            out["mean"].append(round(math.fsum(times) / len(times), 3))
            for pct, key in _PERCENTILES:
                out[key].append(round(_rank(times, pct), 3))
        else:
            for key in keys[2:]:
                out[key].append(None)
        states = status[lo:hi]
        for name, key in _SHARES:
            out[key].append(round(states.count(name) / n, 4) if n else None)
        lo = hi
    return out


async def _range(request: web.Request) -> web.Response:
    ctx, dep_id = request.app[CTX], request.match_info["id"]
    name = request.query.get("range", "24h")
    if name not in RANGES:
        raise ApiError(400, f"must be one of {', '.join(RANGES)}", "range")
    span, buckets = RANGES[name]
    until = query_param(request, "until", float, None, ge=0)

    def build() -> dict[str, Any]:
        end = time.time() if until is None else until
        start = end - span
        try:
            ctx.monitor.get_deployment_status(dep_id)
        except KeyError:
            raise ApiError(
                404, f"deployment {dep_id!r} is not monitored", "deployment_id"
            ) from None
        ts, rt, st = health_points(ctx.monitor.store, dep_id, start, end)
        return {
            "deployment_id": dep_id,
            "range": name,
            "since": start,
            "until": end,
            "bucket_seconds": span / buckets,
            "checks": len(ts),
            "buckets": downsample(ts, rt, st, start, end, buckets),
        }

    return json_response(await asyncio.to_thread(build))


def heartbeats(monitor: Any, ids: Sequence[str], limit: int, errors: bool) -> dict[str, Any]:
    """Each deployment's last ``limit`` checks as columns (see the module docstring);
    without ``errors`` only time and status (the public view)."""
    out: dict[str, Any] = {}
    for dep_id in ids:
        rows = monitor.get_health_history(dep_id, limit=limit)
        beat: dict[str, list[Any]] = {
            "t": [round(r.timestamp, 3) for r in rows],
            "s": [str(r.status) for r in rows],
        }
        if errors:
            beat["r"] = [r.response_time_ms for r in rows]
            beat["e"] = [scrub_text(r.error_message) or None for r in rows]
        out[dep_id] = beat
    return out


async def _heartbeats(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    limit = query_param(request, "limit", int, 60, ge=1, le=200)

    def build() -> dict[str, Any]:
        ids = sorted(ctx.monitor.get_all_deployment_statuses())
        return {"limit": limit, "heartbeats": heartbeats(ctx.monitor, ids, limit, True)}

    resp = json_response(await asyncio.to_thread(build))
    resp.enable_compression()
    return resp


def add_range_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount the heartbeat and range handlers under ``api``."""
    router.add_get(f"{api}/heartbeats", _heartbeats)
    router.add_get(f"{api}/deployments/{{id}}/range", _range)
