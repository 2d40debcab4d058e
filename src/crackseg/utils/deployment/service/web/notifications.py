"""Alert delivery through the API: per-handler counters, dead letters, and re-queueing them.

Private: :func:`.app.create_app` mounts these with :func:`add_notification_routes`.

- ``GET /api/v1/notifications[?limit=N&cursor=C]``: ``{"handlers": [...], "totals": {...},
  "dead_letters": [...newest first, one page of at most N...], "dead_letter_count": n,
  "unrouted": n, "next_cursor": c}`` (``unrouted``: notifications no handler's ``match``
  accepted).
- ``POST /api/v1/notifications/retry`` (a write: needs the token when one is set), with no
  body or ``{"handler_key": key}``: queues the dead letters (of that handler, or all) for
  delivery again; answers 202 ``{"requeued": n, "handler_key": key-or-null}``.

Errors and channel details are scrubbed twice: by the dispatcher with each handler's own
secrets, then here of any URL's password or secret-looking query values.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crackseg.utils.deployment.service.web.api import (
    CTX,
    ApiError,
    json_body,
    json_response,
    scrub_text,
    validation_error,
)
from crackseg.utils.deployment.service.web.models import NotificationReport, Requeued
from crackseg.utils.deployment.service.web.operations import (
    CURSOR,
    Op,
    after_cursor,
    limit_param,
    mount,
    stamp,
)

__all__ = [
    "COUNTERS",
    "LIMIT",
    "NOTIFICATION_OPS",
    "RetryRequest",
    "add_notification_routes",
    "notification_report",
]

#: Per-handler delivery counters, as :meth:`AlertDispatcher.stats` names them.
COUNTERS = (
    "sent", "failed", "retried", "dead_lettered", "coalesced", "dropped", "queued", "dead_letters",
)  # fmt: skip


class RetryRequest(BaseModel):
    """Body of ``POST /api/v1/notifications/retry``; no ``handler_key`` means every handler."""

    model_config = ConfigDict(extra="forbid", strict=True)
    handler_key: str | None = Field(None, min_length=1, max_length=128)


def _scrub_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_deep(v) for v in value]
    return scrub_text(value)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def notification_report(dispatcher: Any, limit: int = 100, cursor: Any = None) -> dict[str, Any]:
    """Counters per handler and one page of dead letters of ``dispatcher``: ``limit`` of
    them, newest first, older than ``cursor`` (a decoded ``next_cursor``; None: the newest).

    ``dispatcher`` is an :class:`~...delivery.dispatcher.AlertDispatcher` or None (no delivery:
    an empty report). Blocking (locks, handler callbacks): call it off the event loop.
    """
    stats: dict[str, dict[str, Any]] = dispatcher.stats() if dispatcher is not None else {}
    handlers: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for name, st in stats.items():
        row: dict[str, Any] = {"name": name, "key": st.get("key"), "kind": st.get("kind") or None}
        row.update((c, _count(st.get(c))) for c in COUNTERS)
        row["last_error"] = scrub_text(st.get("last_error"))
        row["last_error_at"] = st.get("last_error_at")
        stamp(row, "last_error_at")
        if st.get("channel"):
            row["channel"] = _scrub_deep(st["channel"])
        handlers.append(row)
        if row["key"] is not None:
            names[str(row["key"])] = name
    dead = list(dispatcher.dead_letters()) if dispatcher is not None else []
    # Newest first, like an incident log.
    dead.sort(key=_letter_key, reverse=True)
    page, next_cursor = after_cursor(dead, _letter_key, cursor, limit, newest_first=True)
    letters = []
    for d in page:
        letter = stamp(dict(d), "created_at", "dead_at")
        letter["handler"] = names.get(str(letter.get("handler_key")))  # None: handler removed
        letter["last_error"] = scrub_text(letter.get("last_error"))
        letters.append(letter)
    totals = {c: sum(h[c] for h in handlers) for c in COUNTERS}
    return {
        "handlers": handlers,
        "totals": totals,
        "dead_letters": letters,
        "dead_letter_count": len(dead),
        "unrouted": int(getattr(dispatcher, "unrouted", 0)),
        "next_cursor": next_cursor,
    }


def _dispatcher(request: web.Request) -> Any:
    return getattr(request.app[CTX].monitor, "dispatcher", None)


LIMIT = limit_param(100)


def _letter_key(d: dict[str, Any]) -> tuple[float, float, int, str]:
    # Dead since, created at, outbox row and handler: ordered like the log and unique.
    return (d.get("dead_at") or 0.0, d.get("created_at") or 0.0, d.get("id") or 0,
            str(d.get("handler_key")))  # fmt: skip


async def _notifications(request: web.Request) -> web.Response:
    limit, cursor = LIMIT.read(request), CURSOR.read(request)
    report = await asyncio.to_thread(notification_report, _dispatcher(request), limit, cursor)
    return json_response(report)


async def _retry(request: web.Request) -> web.Response:
    dispatcher = _dispatcher(request)
    if dispatcher is None:
        raise ApiError(404, "alert delivery is not enabled on this server", None)
    key: str | None = None
    if request.body_exists:
        try:
            key = RetryRequest.model_validate(await json_body(request)).handler_key
        except ValidationError as exc:
            raise validation_error(exc, RetryRequest) from None

    def requeue() -> int:
        if key is not None and key not in {st.get("key") for st in dispatcher.stats().values()}:
            raise ApiError(404, f"no alert handler has key {key!r}", "handler_key")
        n: int = dispatcher.retry_dead_letters(key)
        return n

    requeued = await asyncio.to_thread(requeue)
    return json_response({"requeued": requeued, "handler_key": key}, 202)


#: Alert delivery routes (paths below ``/api/v1``).
NOTIFICATION_OPS: tuple[Op, ...] = (
    Op("GET", "/notifications", _notifications, "Delivery counters per alert handler and "
       "dead letters, newest first", "notifications", {200: NotificationReport},
       (LIMIT, CURSOR), errors=(400,)),
    Op("POST", "/notifications/retry", _retry, "Queue dead letters (of one handler, or all) "
       "for delivery again", "notifications", {202: Requeued}, body=RetryRequest,
       errors=(400, 408, 413, 415), write=True),
)  # fmt: skip


def add_notification_routes(router: web.UrlDispatcher, api: str) -> None:
    """Mount :data:`NOTIFICATION_OPS` under ``api``."""
    mount(router, api, NOTIFICATION_OPS)
