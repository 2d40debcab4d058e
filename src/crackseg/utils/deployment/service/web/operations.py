"""What an API route takes and answers, declared once: handlers read their inputs through
these declarations, the OpenAPI document (:mod:`.openapi`) is generated from them, and the
response check (:func:`check_answer`) holds each answer to them.

- :class:`Param`: a query parameter with its type and bounds; ``param.read(request)`` parses
  it (a 400 problem naming it when bad).
- Times in (``since``/``until``) are Unix seconds or RFC 3339; times out get an RFC 3339 copy
  beside the Unix number (:func:`stamp`).
- Lists page with an opaque ``cursor`` (:func:`encode_cursor`, :func:`decode_cursor`) and a
  bounded ``limit``. A cursor holds the last row's sort key (a keyset, :func:`after_cursor`,
  :func:`newest_page`), never a row count, so rows arriving between pages shift nothing.
- :class:`Op`: method, path, summary, parameters, request and answer models of one route.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from crackseg.utils.deployment.service.web.problems import ApiError, Problem

__all__ = [
    "CURSOR",
    "MAX_SKIP",
    "Handler",
    "Kind",
    "Op",
    "Param",
    "after_cursor",
    "bad_cursor",
    "check_answer",
    "decode_cursor",
    "encode_cursor",
    "limit_param",
    "mount",
    "newest_page",
    "parse_time",
    "query_param",
    "rfc3339",
    "stamp",
]

Kind = Literal["integer", "number", "string", "time", "cursor"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def query_param(
    request: web.Request, name: str, kind: type, default: Any = None, **bounds: float
) -> Any:
    """Query parameter ``name`` as ``kind`` (int or float) within ``ge``/``le`` bounds, or
    ``default`` when absent; :class:`ApiError` 400 naming the parameter otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ApiError(
            400, f"must be {'an integer' if kind is int else 'a number'}", name
        ) from None
    if not math.isfinite(value):
        raise ApiError(400, "must be a finite number", name)
    if "ge" in bounds and value < bounds["ge"]:
        raise ApiError(400, f"must be >= {bounds['ge']}", name)
    if "le" in bounds and value > bounds["le"]:
        raise ApiError(400, f"must be <= {bounds['le']}", name)
    return value


def rfc3339(ts: float | None) -> str | None:
    """Unix seconds as RFC 3339 in UTC with milliseconds (``2026-12-06T05:53:20.123Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def stamp(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``row`` with ``<key>_rfc3339`` beside each Unix time ``key`` it has (in place)."""
    for key in keys:
        if key in row:
            value = row[key]
            row[f"{key}_rfc3339"] = rfc3339(value) if isinstance(value, int | float) else None
    return row


def parse_time(raw: str, name: str) -> float:
    """``raw`` (Unix seconds, or RFC 3339 with an offset) as Unix seconds; a 400 naming
    ``name`` otherwise."""
    try:
        value = float(raw)
    except ValueError:
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise ApiError(
                400, "must be Unix seconds or RFC 3339 (2026-01-31T12:00:00Z)", name
            ) from None
        if when.tzinfo is None:
            raise ApiError(
                400, "RFC 3339 needs a UTC offset: end it with Z or +HH:MM", name
            ) from None
        return when.timestamp()
    if not math.isfinite(value):
        raise ApiError(400, "must be a finite number", name)
    return value


def encode_cursor(position: Any) -> str:
    """An opaque cursor for ``position`` (any JSON value)."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(raw: str) -> Any:
    """The position a cursor of :func:`encode_cursor` holds; a 400 naming ``cursor``."""
    try:
        return orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        raise bad_cursor() from None


def bad_cursor() -> ApiError:
    """The 400 for a cursor this API did not give."""
    return ApiError(400, "not a cursor this API gave: pass next_cursor back unchanged", "cursor")


#: Deepest a list read newest-last pages (rows): older rows are reached with ``since``.
MAX_SKIP = 100_000


def _position(cursor: Any) -> Any:
    return tuple(cursor) if isinstance(cursor, list) else cursor


def after_cursor(
    rows: Iterable[Any],
    key: Callable[[Any], Any],
    cursor: Any,
    limit: int,
    newest_first: bool = False,
) -> Any:
    """One page of ``rows`` (sorted by ``key``, descending when ``newest_first``) after
    ``cursor`` (a position in a cursor of this list, or None), and the next page's cursor
    (None on the last page).

    The cursor holds the last row's key (a keyset), not a count: rows added or removed
    before it between two reads neither repeat nor skip a row of the next page."""
    position = _position(cursor)
    try:
        after = [
            r
            for r in rows
            if cursor is None or (key(r) < position if newest_first else key(r) > position)
        ]
    except TypeError:  # a position of another list's kind
        raise bad_cursor() from None
    page = after[:limit]
    return page, encode_cursor(key(page[-1])) if len(after) > limit else None


def newest_page(
    read: Callable[[int], list[Any]], key: Callable[[Any], Any], limit: int, cursor: Any
) -> Any:
    """One page of a series read oldest-first by ``read(n)`` (its newest ``n`` rows), paging
    back from the newest; returns the page (oldest first) and the next cursor.

    The cursor is a keyset: the key (``key``, unique and ordered like the series) of the
    page's oldest row, plus how deep it was, so the next read usually asks once for enough
    rows. Rows that arrive between two reads are newer than the key and never shift it."""
    if cursor is None:
        before, depth = None, 0
    elif isinstance(cursor, dict) and set(cursor) == {"k", "n"} and isinstance(cursor["n"], int):
        before, depth = _position(cursor["k"]), cursor["n"]
        if not 0 < depth <= MAX_SKIP:
            raise bad_cursor()
    else:
        raise bad_cursor()
    n = min(depth + limit + 1, MAX_SKIP + 1)
    while True:
        rows = sorted(read(n), key=key)
        try:
            older = [r for r in rows if before is None or key(r) < before]
        except TypeError:
            raise bad_cursor() from None
        if len(older) > limit or len(rows) < n:
            break
        if n > MAX_SKIP:
            raise ApiError(400, f"pages end {MAX_SKIP} rows back: narrow with since", "cursor")
        n = min(2 * n, MAX_SKIP + 1)
    page = older[-limit:]
    if len(older) <= limit or not page:
        return page, None
    seen = len(rows) - len(older) + len(page)
    return page, encode_cursor({"k": key(page[0]), "n": min(seen, MAX_SKIP)})


@dataclass(frozen=True)
class Param:
    """A query parameter: its kind, bounds and default, for parsing and for the document."""

    name: str
    kind: Kind
    description: str
    default: Any = None
    ge: float | None = None
    le: float | None = None
    enum: tuple[str, ...] | None = None

    def read(self, request: web.Request) -> Any:
        """The parameter's value in ``request`` (``default`` when absent); 400 when bad."""
        raw = request.query.get(self.name)
        if raw is None or raw == "":
            return self.default
        if self.kind in ("integer", "number"):
            bounds = {k: v for k, v in (("ge", self.ge), ("le", self.le)) if v is not None}
            kind = int if self.kind == "integer" else float
            return query_param(request, self.name, kind, self.default, **bounds)
        if self.kind == "time":
            return parse_time(raw, self.name)
        if self.kind == "cursor":
            return decode_cursor(raw)
        if self.enum is not None and raw not in self.enum:
            raise ApiError(400, f"must be one of: {', '.join(self.enum)}", self.name)
        return raw

    def schema(self) -> dict[str, Any]:
        """The parameter's OpenAPI object."""
        s: dict[str, Any]
        if self.kind == "time":
            s = {"oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}
        elif self.kind == "cursor":
            s = {"type": "string"}
        else:
            s = {"type": self.kind}
        bounds = (("minimum", self.ge), ("maximum", self.le), ("default", self.default))
        s.update((k, v) for k, v in bounds if v is not None)
        if self.enum is not None:
            s["enum"] = list(self.enum)
        return {"name": self.name, "in": "query", "required": False,
                "description": self.description, "schema": s}  # fmt: skip


def limit_param(default: int, most: int = 1_000) -> Param:
    """``limit``: rows on one page, ``default`` when absent, at most ``most``."""
    return Param("limit", "integer", f"rows on this page (at most {most})", default, 1, most)


#: ``cursor``: where the previous page ended (its ``next_cursor``).
CURSOR = Param("cursor", "cursor", "the previous page's next_cursor; absent: the first page")


@dataclass(frozen=True)
class Op:
    """One route: ``path`` below ``/api/v1`` unless it starts with ``//`` (then from the root,
    e.g. ``//healthz``); ``answers`` maps each success status to its model (None: no body);
    ``errors`` lists the error statuses it may answer (each a :class:`Problem`)."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    answers: dict[int, type[BaseModel] | None]
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    write: bool = field(default=False)
    media_type: str = "application/json"
    #: What each ``{name}`` of ``path`` is, for the document.
    path_params: tuple[tuple[str, str], ...] = ()

    def url(self, api: str) -> str:
        """The route's path on the server whose API lives at ``api``."""
        return self.path[1:] if self.path.startswith("//") else api + self.path


def mount(router: web.UrlDispatcher, api: str, ops: Iterable[Op]) -> None:
    """Add every operation of ``ops`` to ``router``."""
    for op in ops:
        if op.method == "GET":  # HEAD too, as aiohttp's add_get does
            router.add_get(op.url(api), op.handler)
        else:
            router.add_route(op.method, op.url(api), op.handler)


def check_answer(op: Op, status: int, body: bytes) -> str | None:
    """Why ``body`` (answered ``status`` by ``op``) is not what the document says, or None.

    A status ``op.answers`` names is held to its model (None: not checked, e.g. a text or
    empty body); any other error status must be documented and a :class:`Problem`. A
    redirect (3xx) is not checked: its body is not an answer (an old path's 308 to a new one).
    """
    if 300 <= status < 400 and status not in op.answers:
        return None
    if status in op.answers:
        model = op.answers[status]
    elif status >= 400 and status in (*op.errors, 401, 404, 405, 500):
        model = Problem
    else:
        return f"status {status} is not documented"
    if model is None:
        return None
    try:
        model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        return f"{model.__name__}.{where}: {first['msg']}"
    return None
