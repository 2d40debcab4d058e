"""SVG badges a README or a wiki embeds: health, uptime and response time of one deployment.

- ``/badges/{id}/health.svg``: ``health | healthy`` (degraded, unhealthy, unknown);
- ``/badges/{id}/uptime/{24h|7d|30d}.svg``: ``uptime 24h | 99.9%`` (``no data`` before the
  first check);
- ``/badges/{id}/response-time.svg``: ``response time | 42 ms`` (the last check's).

A badge is readable without the token only when its deployment is ``public: true``; with a
token configured, any other deployment's badge needs ``Authorization: Bearer``. Without the
right to read it, an existing and a missing deployment answer the same 404, so a badge URL
tells nobody which deployments exist. Badges carry ``ETag`` and ``Cache-Control`` (a short
``max-age``; ``public`` only for a public deployment) and answer ``If-None-Match`` with 304.
Text is XML-escaped; widths are estimated from character counts (no font files).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from pydantic import BaseModel

from crackseg.utils.deployment.service.web.api import CTX, Ctx
from crackseg.utils.deployment.service.web.operations import Op, mount
from crackseg.utils.deployment.service.web.ranges import (
    RANGES,
    downsample,
    health_points,
    range_cache,
)

__all__ = ["BADGE_MAX_AGE", "BADGE_OPS", "add_badge_routes", "badge_svg", "may_read"]

#: Seconds a badge may be cached: about one check interval of a typical deployment.
BADGE_MAX_AGE = 60
_COLOURS = {
    "healthy": "#2e9d4d",
    "degraded": "#c98a00",
    "unhealthy": "#d0342c",
    "unknown": "#8a8f98",
}
_LABEL_BG = "#555"
_UPTIMES = ("24h", "7d", "30d")
_MAX_TEXT = 40


def _width(text: str) -> int:
    # Verdana 11 px averages ~6.5 px a character; narrow ones a little less.
    narrow = sum(1 for c in text if c in "ilI.:,;|!' ")
    return round((len(text) - narrow) * 6.8 + narrow * 3.6) + 12


def badge_svg(label: str, message: str, colour: str) -> str:
    """A flat two-part badge (``label | message``) as SVG text, with its ``<title>``."""
    label, message = label[:_MAX_TEXT], message[:_MAX_TEXT]
    lw, mw = _width(label), _width(message)
    total = lw + mw
    el, em, ec = escape(label), escape(message), escape(colour)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{el}: {em}"><title>{el}: {em}</title>'
        f'<rect width="{lw}" height="20" fill="{_LABEL_BG}"/>'
        f'<rect x="{lw}" width="{mw}" height="20" fill="{ec}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        'font-size="11">'
        f'<text x="{lw / 2:.1f}" y="14">{el}</text>'
        f'<text x="{lw + mw / 2:.1f}" y="14">{em}</text></g></svg>'
    )


def may_read(ctx: Ctx, request: web.Request, status: dict[str, Any] | None) -> bool:
    """Whether ``request`` may read this deployment's public face: it is public, or no token
    is configured, or the request carries the token."""
    if status is None:
        return False
    if status.get("public") or ctx.token is None:
        return True
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), ctx.token)


def _status(ctx: Ctx, dep_id: str) -> dict[str, Any] | None:
    try:
        status: dict[str, Any] = ctx.monitor.get_deployment_status(dep_id)
    except KeyError:
        return None
    return status


def _uptime_text(pct: float | None) -> tuple[str, str]:
    if pct is None:
        return "no data", _COLOURS["unknown"]
    # Rounded down, as on the page: 99.96 % never reads as 100.0 %.
    shown = f"{int(pct * 10 + 1e-9) / 10:.1f}%"
    colour = "healthy" if pct >= 99.5 else "degraded" if pct >= 95 else "unhealthy"
    return shown, _COLOURS[colour]


def _uptime_30d(ctx: Ctx, dep_id: str) -> float | None:
    # The tracker keeps 24 h and 7 d; 30 days come from the range buckets, whose finished
    # ones are cached: an open badge must not cost a read of 30 days of checks each time.
    store = ctx.monitor.store
    cache = range_cache(store)
    if cache is not None:
        _, _, b = cache.read(store, dep_id, "30d", time.time())
    else:
        now = time.time()
        ts, rt, st = health_points(store, dep_id, now - RANGES["30d"][0], now)
        b = downsample(ts, rt, st, now - RANGES["30d"][0], now, RANGES["30d"][1])
    checks: int = sum(b["count"])
    if not checks:
        return None
    # Up as the uptime tracker counts it: healthy or degraded.
    up: float = sum(
        ((u or 0.0) + (d or 0.0)) * n
        for u, d, n in zip(b["up"], b["degraded"], b["count"], strict=True)
    )
    return 100.0 * up / checks


def _make(ctx: Ctx, dep_id: str, kind: str) -> tuple[str, dict[str, Any] | None]:
    status = _status(ctx, dep_id)
    if status is None:
        return "", None
    if kind == "health":
        s = str(status.get("health_status") or "unknown")
        return badge_svg("health", s, _COLOURS.get(s, _COLOURS["unknown"])), status
    if kind == "response-time":
        rt = status.get("response_time_ms")
        text = "no data" if rt is None else f"{rt:.0f} ms" if rt >= 10 else f"{rt:.1f} ms"
        colour = _COLOURS["unknown"] if rt is None else _COLOURS["healthy"]
        return badge_svg("response time", text, colour), status
    period = kind.removeprefix("uptime-")
    pct = _uptime_30d(ctx, dep_id) if period == "30d" else ctx.uptime.uptime(dep_id).get(period)
    text, colour = _uptime_text(pct)
    return badge_svg(f"uptime {period}", text, colour), status


async def _serve(request: web.Request, kind: str) -> web.StreamResponse:
    ctx, dep_id = request.app[CTX], request.match_info["id"]
    svg, status = await asyncio.to_thread(_make, ctx, dep_id, kind)
    if not may_read(ctx, request, status):
        return web.Response(
            status=404, text="no public badge for this deployment", content_type="text/plain"
        )
    body = svg.encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    scope = "public" if status and status.get("public") else "private"
    headers = {
        "ETag": etag,
        "Cache-Control": f"{scope}, max-age={BADGE_MAX_AGE}",
        # Opened on its own, an SVG is a document of this origin: it may run nothing.
        "Content-Security-Policy": "default-src 'none'",
    }
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="image/svg+xml", headers=headers)


async def _health(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "health")


async def _response_time(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "response-time")


async def _uptime(request: web.Request) -> web.StreamResponse:
    period = request.match_info["period"]
    if period not in _UPTIMES:
        return web.Response(
            status=404,
            text=f"uptime badges are {', '.join(p + '.svg' for p in _UPTIMES)}",
            content_type="text/plain",
        )
    return await _serve(request, f"uptime-{period}")


_SVG: dict[int, type[BaseModel] | None] = {
    200: None,
    304: None,
    404: None,
}  # an image, not modified, or no public badge (text)
_BADGE = (("id", "the deployment's id"),)
#: The badge routes (from the server root): without the token, only a public deployment's.
BADGE_OPS: tuple[Op, ...] = (
    Op("GET", "//badges/{id}/health.svg", _health, "Health badge (healthy, degraded, "
       "unhealthy, unknown)", "public", _SVG, media_type="image/svg+xml", path_params=_BADGE),
    Op("GET", "//badges/{id}/response-time.svg", _response_time, "Response time badge",
       "public", _SVG, media_type="image/svg+xml", path_params=_BADGE),
    Op("GET", "//badges/{id}/uptime/{period}.svg", _uptime, "Uptime badge over 24h, 7d or 30d",
       "public", _SVG, media_type="image/svg+xml",
       path_params=(*_BADGE, ("period", "24h, 7d or 30d"))),
)  # fmt: skip


def add_badge_routes(router: web.UrlDispatcher) -> None:
    """Mount ``/badges/{id}/...``."""
    mount(router, "", BADGE_OPS)
