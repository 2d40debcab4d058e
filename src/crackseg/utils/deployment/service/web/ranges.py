"""Time on the status page: heartbeat bars and range charts, shaped on the server.

- ``GET /api/v1/heartbeats?limit=N&deployments=P&cursor=C``: one page of ``P`` deployments
  (by id, default 100, at most 1,000; ``next_cursor`` for the next), each with its last
  ``N`` checks (1-200, default 60) as compact columns ``{"t": [...], "s": [...], "r": [...],
  "e": [...]}`` (time, status, response time in ms, redacted error or null), oldest first.
- ``GET /api/v1/deployments/{id}/range?range=24h``: the deployment's checks over ``1h``,
  ``24h``, ``7d`` or ``30d`` cut into at most :data:`MAX_BUCKETS` equal buckets, each with
  its count, response time min/max/mean/p50/p95/p99 and the shares of healthy, degraded and
  unhealthy checks. An empty bucket says ``count: 0`` and null figures: no data is never
  drawn as a value. Buckets are aligned to their width and end with the one holding
  ``until`` (default now). The store answers whole buckets from its rollups when it has
  them (``health_buckets``: the SQLite store, for 24 h and longer, ~8,600 rollup rows for
  30 days instead of ~260,000 checks; percentiles within ~4%), else from its rows
  (``health_points`` when it has it). Without ``until`` the finished buckets are kept
  (:class:`RangeCache`), so a refresh reads only the newest; with it, nothing is cached.

Private: :func:`.app.create_app` mounts these with :func:`add_range_routes`.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from crackseg.utils.deployment.service.web.api import (
    CTX,
    DEP_ID,
    UNTIL,
    ApiError,
    json_response,
    scrub_text,
)
from crackseg.utils.deployment.service.web.operations import (
    CURSOR,
    Op,
    Param,
    after_cursor,
    mount,
)
from crackseg.utils.deployment.service.web.page_models import Heartbeats, RangeAnswer

__all__ = [
    "BEATS_LIMIT",
    "BEATS_PAGE",
    "MAX_BUCKETS",
    "RANGE",
    "RANGES",
    "RANGE_OPS",
    "RangeCache",
    "add_range_routes",
    "columns",
    "downsample",
    "health_points",
    "heartbeats",
    "range_cache",
    "window",
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


def columns(
    store: Any, deployment_id: str, since: float, width: float, count: int
) -> dict[str, list[Any]]:
    """``count`` buckets of ``width`` seconds from ``since`` (see :func:`downsample`): from
    the store's ``health_buckets`` (rollups) when it answers, else from its rows."""
    fast = getattr(store, "health_buckets", None)
    cols: dict[str, list[Any]] | None = (
        None if fast is None else fast(deployment_id, since, width, count)
    )
    if cols is None:
        until = since + width * count
        ts, rt, st = health_points(store, deployment_id, since, until)
        cols = downsample(ts, rt, st, since, until, count)
    return cols


def window(name: str, end: float) -> tuple[int, int, float]:
    """Range ``name`` ending with the bucket that holds ``end``: indices of its first and
    last bucket (bucket ``i`` starts at ``i * width``) and the width in seconds."""
    span, n = RANGES[name]
    width = span / n
    last = math.floor(end / width)
    return last - n + 1, last, width


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


class RangeCache:
    """Finished buckets of recent range reads, so the page's refresh (every few seconds) reads
    from the store only the buckets still filling, not 30 days again.

    Buckets are aligned to multiples of their width, so the same range read twice has the same
    buckets; one is finished ``settle`` seconds after its end (a check is recorded after it
    ends, and the SQLite store commits within a second). At most ``max_entries`` (deployment,
    range) pairs are kept, least recently used dropped first. Thread-safe.
    """

    def __init__(self, max_entries: int = 128, settle: float = 60.0) -> None:
        self.max_entries, self.settle = max_entries, settle
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[int, dict[str, list[Any]]]] = (
            OrderedDict()
        )

    def read(
        self, store: Any, dep_id: str, name: str, now: float
    ) -> tuple[float, float, dict[str, list[Any]]]:
        """``(since, until, columns)`` of range ``name`` ending with the bucket holding ``now``."""
        n = RANGES[name][1]
        first, last, width = window(name, now)
        until = (last + 1) * width
        key = (dep_id, name)
        with self._lock:
            hit = self._entries.get(key)
        start = first
        if hit is not None and hit[0] <= first < hit[0] + len(hit[1]["t"]):
            start = hit[0] + len(hit[1]["t"])
        cols = columns(store, dep_id, start * width, width, last + 1 - start)
        if start != first and hit is not None:
            skip = first - hit[0]
            cols = {k: v[skip:] + cols[k] for k, v in hit[1].items()}
        done = max(0, min(n, math.floor((now - self.settle) / width) - first))
        with self._lock:
            self._entries[key] = (first, {k: v[:done] for k, v in cols.items()})
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return first * width, until, cols

    def forget(self, dep_id: str) -> None:
        """Drop a deployment's buckets (its history was replaced)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == dep_id]:
                del self._entries[key]


_CACHES: weakref.WeakKeyDictionary[Any, RangeCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def range_cache(store: Any) -> RangeCache | None:
    """The store's :class:`RangeCache` (made on first use, dropped with the store), or None
    for a store that cannot be weakly referenced."""
    with _CACHES_LOCK:
        try:
            cache = _CACHES.get(store)
            if cache is None:
                cache = _CACHES[store] = RangeCache()
        except TypeError:  # a store that cannot be weakly referenced: no cache
            return None
        return cache


async def _range(request: web.Request) -> web.Response:
    ctx, dep_id = request.app[CTX], request.match_info["id"]
    name = RANGE.read(request)
    span, buckets = RANGES[name]
    until = UNTIL.read(request)

    def build() -> dict[str, Any]:
        try:
            ctx.monitor.get_deployment_status(dep_id)
        except KeyError:
            raise ApiError(
                404, f"deployment {dep_id!r} is not monitored", "deployment_id"
            ) from None
        store = ctx.monitor.store
        cache = range_cache(store) if until is None else None
        if cache is not None:
            start, end, cols = cache.read(store, dep_id, name, time.time())
        else:
            first, last, width = window(name, time.time() if until is None else until)
            start, end = first * width, (last + 1) * width
            cols = columns(store, dep_id, start, width, buckets)
        return {
            "deployment_id": dep_id,
            "range": name,
            "since": start,
            "until": end,
            "bucket_seconds": span / buckets,
            "checks": sum(cols["count"]),
            "buckets": cols,
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
    limit, per_page = BEATS_LIMIT.read(request), BEATS_PAGE.read(request)
    cursor = CURSOR.read(request)

    def build() -> dict[str, Any]:
        ids = sorted(ctx.monitor.get_all_deployment_statuses())
        page, next_cursor = after_cursor(ids, str, cursor, per_page)
        beats = heartbeats(ctx.monitor, page, limit, True)
        return {"limit": limit, "heartbeats": beats, "count": len(page), "next_cursor": next_cursor}

    resp = json_response(await asyncio.to_thread(build))
    resp.enable_compression()
    return resp


RANGE = Param("range", "string", "the span to read", "24h", enum=tuple(RANGES))
BEATS_LIMIT = Param("limit", "integer", "last checks per deployment", 60, 1, 200)
# ``limit`` counts checks here (its meaning before pages), so the page size has its own name.
BEATS_PAGE = Param(
    "deployments", "integer", "deployments on this page (at most 1000)", 100, 1, 1000
)
#: The heartbeat and range routes (paths below ``/api/v1``).
RANGE_OPS: tuple[Op, ...] = (
    Op("GET", "/heartbeats", _heartbeats, "Every deployment's last checks as columns, oldest "
       "first (heartbeat bars), one page of deployments by id", "page", {200: Heartbeats},
       (BEATS_LIMIT, BEATS_PAGE, CURSOR), errors=(400,)),
    Op("GET", "/deployments/{id}/range", _range, "A deployment's checks over a range, "
       "downsampled on the server into equal buckets", "page", {200: RangeAnswer},
       (RANGE, UNTIL), errors=(400,), path_params=DEP_ID),
)  # fmt: skip


def add_range_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount the heartbeat and range handlers under ``api``."""
    mount(router, api, RANGE_OPS)
