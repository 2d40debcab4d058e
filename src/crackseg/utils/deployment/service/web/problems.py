"""Errors of the web face as RFC 9457 problem details (``application/problem+json``).

Every error the API, the auth guard and the hardened input checks answer has one shape::

    {"type": "about:blank", "title": "Bad Request", "status": 400,
     "detail": "must be >= 1", "field": "limit"}

``type`` is ``about:blank`` (RFC 9457 §4.2.1: the status code says what kind of problem it
is, and ``title`` is its reason phrase); ``detail`` says what is wrong and what to do;
``field`` names the input at fault (a body key as a dotted path, a query parameter, a header
such as ``Authorization``) or is null. Handlers raise :class:`ApiError`; the web middleware
turns it into :func:`problem_response`.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PROBLEM_CONTENT_TYPE", "ApiError", "Problem", "problem", "problem_response"]

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An error answer (RFC 9457 problem details, plus the input ``field`` at fault)."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field("about:blank", description="always about:blank: the status says it all")
    title: str = Field(description="the HTTP reason phrase of `status`", examples=["Not Found"])
    status: int = Field(ge=400, le=599, description="the HTTP status code, repeated")
    detail: str = Field(description="what is wrong and what to do", examples=["must be >= 1"])
    field: str | None = Field(
        description="the input at fault: a body key (dotted path), query parameter or header",
        examples=["limit"],
    )


class ApiError(Exception):
    """An error answered as a :class:`Problem` with ``status``, ``message`` as its detail and
    ``field`` naming the input at fault (or None)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def problem(status: int, detail: str, field: str | None = None) -> dict[str, object]:
    """The problem document for ``status`` (title is its reason phrase)."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "field": field}  # fmt: skip


def problem_response(
    status: int, detail: str, field: str | None = None, **headers: str
) -> web.Response:
    """``problem(status, detail, field)`` as an ``application/problem+json`` response."""
    return web.Response(
        body=orjson.dumps(problem(status, detail, field)),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers or None,
    )
