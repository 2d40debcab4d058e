"""Errors of the web face as RFC 9457 problem details (``application/problem+json``).

Every error the API, the auth guard and the hardened input checks answer has one shape::

    {"type": "about:blank", "title": "Bad Request", "status": 400,
     "detail": "must be >= 1", "field": "limit"}

``type`` is ``about:blank`` (RFC 9457 §4.2.1: the status code says what kind of problem it
is, and ``title`` is its reason phrase); ``detail`` says what is wrong and what to do;
``field`` names the input at fault (a body key as a dotted path, a query parameter, a header
such as ``Authorization``) or is null. Input with several problems is answered with all of
them in one go: ``errors`` lists each ``{"field", "detail"}`` (the first :data:`MAX_ERRORS`),
the first being ``field`` and ``detail`` (which says how many more there are); ``errors`` is
absent when there is one.
Handlers raise :class:`ApiError` (:meth:`ApiError.listing` for several problems); the web
middleware turns it into :func:`problem_response`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_ERRORS",
    "PROBLEM_CONTENT_TYPE",
    "ApiError",
    "FieldProblem",
    "Problem",
    "problem",
    "problem_response",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
#: Most problems one answer lists in ``errors``.
MAX_ERRORS = 50


class FieldProblem(BaseModel):
    """One problem of the input: the field at fault and what to do."""

    model_config = ConfigDict(extra="forbid")
    field: str | None = Field(description="the input at fault, as in `Problem.field`")
    detail: str = Field(description="what is wrong and what to do")


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
    errors: list[FieldProblem] | None = Field(
        None,
        max_length=MAX_ERRORS,
        description="every problem of the input, when there are several (the first is "
        "`field` and `detail`); absent when there is one",
    )


class ApiError(Exception):
    """An error answered as a :class:`Problem` with ``status``, ``message`` as its detail and
    ``field`` naming the input at fault (or None)."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        *,
        errors: Sequence[tuple[str | None, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.errors = list(errors)

    @classmethod
    def listing(cls, status: int, problems: Sequence[tuple[str | None, str]]) -> ApiError:
        """One error answering every ``(field, detail)`` of ``problems`` (at least one; the
        first :data:`MAX_ERRORS` listed): the first as ``field`` and ``detail``, which
        says how many more there are."""
        (field, detail), more = problems[0], len(problems) - 1
        if more:
            detail += f" (and {more} more problem{'s' if more > 1 else ''}: see errors"
            # A small body can hold thousands of bad keys: the answer stays bounded.
            if len(problems) > MAX_ERRORS:
                detail += f", which lists the first {MAX_ERRORS}"
            detail += ")"
        return cls(status, detail, field, errors=problems[:MAX_ERRORS] if more else ())


def problem(
    status: int,
    detail: str,
    field: str | None = None,
    errors: Sequence[tuple[str | None, str]] = (),
) -> dict[str, object]:
    """The problem document for ``status`` (title is its reason phrase); ``errors``, when
    given, become its list of every problem."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    doc: dict[str, object] = {"type": "about:blank", "title": title, "status": status,
                              "detail": detail, "field": field}  # fmt: skip
    if errors:
        doc["errors"] = [{"field": where, "detail": what} for where, what in errors]
    return doc


def problem_response(
    status: int,
    detail: str,
    field: str | None = None,
    *,
    errors: Sequence[tuple[str | None, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """``problem(status, detail, field, errors)`` as an ``application/problem+json``
    response with ``headers``."""
    return web.Response(
        body=orjson.dumps(problem(status, detail, field, errors)),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers or None,
    )
