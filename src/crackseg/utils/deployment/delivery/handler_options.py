"""Handler options as pydantic models, like the rest of the configuration file.

Every channel declares its options as a subclass of :class:`HandlerOptions` (its ``Options``
attribute). :func:`option_problems` checks one handler's mapping and returns *every*
problem as ``(key path, what is expected)``, unknown keys with a suggestion, so a file with
three bad handlers gets three messages in one run. Durations are written as everywhere in
the file (``30``, ``"30s"``, ``"5m"``).

>>> option_problems(HandlerOptions, {"send_resolvd": True})
[('send_resolvd', "unknown key (did you mean 'send_resolved'?); expected one of: name, key, send_resolved, retry, match")]
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from crackseg.utils.deployment.delivery.options import check_url
from crackseg.utils.deployment.delivery.retry import RetryPolicy
from crackseg.utils.deployment.delivery.routing import Match
from crackseg.utils.deployment.durations import Duration as AnyDuration
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.files import secret_files
from crackseg.utils.deployment.validation import problems

__all__ = [
    "HANDLER_NAME_PATTERN",
    "Duration",
    "HandlerOptions",
    "HandlerOptionsError",
    "RetryOptions",
    "header_problems",
    "option_problems",
    "secret_problems",
    "secret_value",
    "url_problems",
    "with_secret_files",
]

#: A positive duration (the one duration type, :data:`~..durations.Duration`).
Duration = Annotated[AnyDuration, Field(gt=0)]
#: What a handler ``name`` may be: it keys the outbox rows and alert state across restarts.
HANDLER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/#-]{0,127}$"


class HandlerOptionsError(ConfigError):
    """One or more problems with handler options; ``problems`` holds them all."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(*problems[0], more=problems[1:])


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryOptions(_Options):
    """``retry: {initial: 1s, max_delay: 30s, max_age: 1h}`` (see :class:`~.retry.RetryPolicy`)."""

    initial: Duration = 1.0
    max_delay: Duration = 30.0
    max_age: Duration = 3600.0

    def policy(self) -> RetryPolicy:
        return RetryPolicy(initial=self.initial, max_delay=self.max_delay, max_age=self.max_age)


class HandlerOptions(_Options):
    """Options every handler has. ``name`` is its stable identity (outbox rows and alert
    state follow it); ``key`` is the older spelling of the same thing."""

    name: str | None = Field(default=None, pattern=HANDLER_NAME_PATTERN)
    key: str | None = Field(default=None, min_length=1)
    send_resolved: StrictBool = True
    retry: RetryOptions | None = None
    #: What the handler receives (see :class:`~.routing.Match`); none: everything.
    match: Match | None = None

    def problems(self) -> list[tuple[str, str]]:
        """What the field types cannot say (pairs of options, environment variables)."""
        if self.name is not None and self.key is not None and self.name != self.key:
            return [("key", "give name or key (the same thing), not both")]
        return []

    @property
    def identity(self) -> str | None:
        return self.name or self.key


def with_secret_files(
    model: type[HandlerOptions], spec: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``spec`` with every ``<secret>_file`` read into ``<secret>``: each option that can come
    from the environment (``url`` beside ``url_env``...) can come from a file too."""
    names = [n[: -len("_env")] for n in model.model_fields if n.endswith("_env")]
    return secret_files(spec, [n for n in names if n in model.model_fields])


def option_problems(model: type[HandlerOptions], spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Every problem of ``spec`` against ``model`` (empty when it is valid)."""
    spec, found = with_secret_files(model, spec)
    try:
        opts = model.model_validate(spec)
    except ValidationError as exc:
        return found + problems(exc, model)
    return found + opts.problems()


def secret_value(value: str | None, env: str | None) -> str | None:
    """The secret given inline, or read from the environment variable ``env`` names; an
    empty one is none (``secret: ${VAR:-}`` leaves an optional secret out)."""
    if env is not None:
        return os.environ.get(env) or None
    return value or None


def secret_problems(
    field: str, value: str | None, env: str | None, *, required: bool
) -> list[tuple[str, str]]:
    """Problems of a secret given as ``field`` or ``field_env`` (an environment variable)."""
    if value is not None and env is not None:
        return [(field, f"give either {field} or {field}_env, not both")]
    if env is not None:
        if os.environ.get(env) is None:
            return [(f"{field}_env", f"environment variable {env!r} is not set")]
        if not os.environ[env] and required:
            return [(f"{field}_env", f"environment variable {env!r} is empty")]
        return []
    if value is None:
        if required:
            return [(field, f"is required (or set {field}_env to an environment variable)")]
        return []
    if not value and required:
        return [(field, "must be a non-empty string")]
    return []


def url_problems(field: str, url: str | None) -> list[tuple[str, str]]:
    """``[]`` for an http(s) URL with a host (or None), else the problem."""
    if url is None:
        return []
    try:
        check_url(url, field)
    except ConfigError as exc:
        return exc.problems
    return []


#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def header_problems(headers: dict[str, str]) -> list[tuple[str, str]]:
    """``(field, problem)`` for each header that could not be sent: a name that is not an
    HTTP token, a value with a line break or a control character, or one HTTP cannot carry
    (beyond Latin-1). Values are never quoted back: they may be credentials."""
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            out.append((f"headers.{name}", "not an HTTP header name: letters, digits and - only"))
            continue
        text = str(value)
        try:
            text.encode("latin-1")
        except UnicodeError:
            out.append((f"headers.{name}", "the value holds characters HTTP headers cannot carry"))
            continue
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in text):
            out.append((f"headers.{name}", "the value holds a line break or control character"))
    return out
