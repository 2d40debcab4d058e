"""What one HTTP exchange of the fast client answers (beside :mod:`._fastconn`, which
makes it), and the marker a request uses to ask for every response header."""

from __future__ import annotations

__all__ = ["FastResponse", "WithHeaders"]


class WithHeaders(int):
    """A body bound that also asks for every response header (a check whose conditions
    read ``[HEADERS]``): the default check reads only the few it needs, with no copy."""

    __slots__ = ()


class FastResponse:
    """Status, the headers a health check uses, the (decoded, maybe truncated) body, and
    when it was complete (``time.monotonic()``); ``cert_not_after``: the earliest expiry of
    the connection's certificate chain (TLS only); ``headers``: every header, lower-case
    names, when the request asked (:class:`WithHeaders`)."""

    __slots__ = (
        "body",
        "cert_not_after",
        "content_type",
        "headers",
        "location",
        "received",
        "status",
        "truncated",
    )

    def __init__(
        self,
        status: int,
        content_type: str | None,
        location: str | None,
        body: bytes,
        truncated: bool,
        received: float,
    ) -> None:
        self.received = received
        self.status = status
        self.content_type = content_type
        self.location = location
        self.body = body
        self.truncated = truncated
        self.cert_not_after: float | None = None
        self.headers: dict[str, str] | None = None
