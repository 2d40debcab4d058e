"""Plumbing shared by the channels: secret scrubbing, a bounded synchronous HTTP POST, times.

Their options are pydantic models (:mod:`.handler_options`).

Handlers run in the dispatcher's worker threads, so a blocking call with a timeout is the
simple and correct tool: no event loop to share, nothing to leak between threads.
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from crackseg.utils.deployment.delivery.deadline import SendDeadline
from crackseg.utils.deployment.errors import ConfigError, NotifierError
from crackseg.utils.deployment.redact import MASK, redact_text
from crackseg.utils.deployment.version import USER_AGENT

__all__ = [
    "MASK",
    "MAX_RESPONSE_BYTES",
    "USER_AGENT",
    "Facts",
    "check_url",
    "host_of",
    "http_post",
    "iso8601",
    "scrub",
    "watched_opener",
]


#: Largest response body read from a receiver; the rest is never read.
MAX_RESPONSE_BYTES = 64 * 1024


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each known secret masked and every URL cut down to scheme and host.

    >>> scrub("POST https://hooks.slack.com/services/T0/B0/xyz failed", ["xyz"])
    'POST https://hooks.slack.com/*** failed'
    """
    return redact_text(text, secrets, url_paths=False)


def host_of(url: str) -> str:
    """``host[:port]`` of ``url`` without credentials: safe in names and errors."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def iso8601(ts: float) -> str:
    """RFC 3339 UTC time with milliseconds, as Alertmanager and Slack expect."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Following a redirect would re-send the body, and maybe its auth header, to a host
    # nobody configured: a redirect is a configuration error.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _WatchedHTTP(urllib.request.HTTPHandler):
    """Plain HTTP whose connection's socket is handed to a :class:`SendDeadline`."""

    def __init__(self, deadline: SendDeadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self._deadline), req)


class _WatchedHTTPS(urllib.request.HTTPSHandler):
    """HTTPS (default trust) whose connection's socket is handed to a :class:`SendDeadline`."""

    def __init__(self, deadline: SendDeadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPSConnection, self._deadline), req)


def _watched(base: type[http.client.HTTPConnection], deadline: SendDeadline) -> Any:
    class Watched(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    return Watched


def watched_opener(deadline: SendDeadline) -> urllib.request.OpenerDirector:
    """A urllib opener that follows no redirect and hands each connection's socket to
    ``deadline`` (cut when it passes, whatever the peer sends)."""
    return urllib.request.build_opener(
        _NoRedirect(), _WatchedHTTP(deadline), _WatchedHTTPS(deadline)
    )


def http_post(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float, *, what: str
) -> tuple[int, bytes]:
    """POST ``body`` and return ``(status, first bytes of the answer)`` for a 2xx answer.

    ``timeout`` bounds each socket operation, and the whole exchange (status line, headers,
    interim ``100 Continue`` answers, body) ends within ``2 * timeout`` whatever the
    receiver does: a receiver answering one byte at a time is cut there.

    Raises :class:`NotifierError` naming only ``what`` and the host: permanent for a 3xx
    or a 4xx other than 408 and 429, transient for 5xx, 408, 429, timeouts and connection
    failures.
    """
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("User-Agent", USER_AGENT)
    for k, v in headers.items():
        request.add_header(k, v)
    where = f"{what} at {host_of(url)}"
    with SendDeadline(2 * timeout) as deadline:
        opener = watched_opener(deadline)
        try:
            with opener.open(request, timeout=timeout) as response:
                chunks: list[bytes] = []
                size = 0
                while size < MAX_RESPONSE_BYTES:
                    chunk = response.read1(min(8192, MAX_RESPONSE_BYTES - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                if deadline.expired:
                    raise TimeoutError
                return int(response.status), b"".join(chunks)
        except urllib.error.HTTPError as exc:
            try:
                detail = exc.read(512).decode("utf-8", "replace").strip()
            except Exception:
                detail = ""
            finally:
                exc.close()
            code = int(exc.code)
            permanent = 300 <= code < 500 and code not in (408, 429)
            msg = f"{where} answered HTTP {code}" + (f": {detail[:200]}" if detail else "")
            raise NotifierError(msg, permanent=permanent) from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            if deadline.expired or isinstance(reason, socket.timeout | TimeoutError):
                raise NotifierError(f"{where} timed out after {timeout:g} s") from None
            raise NotifierError(f"{where} unreachable: {type(reason).__name__}") from None


def check_url(url: Any, field: str) -> str:
    """``url`` if it is an http(s) URL with a host, else :class:`ConfigError`."""
    if not isinstance(url, str):
        raise ConfigError(field, "must be an http:// or https:// URL string")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(field, "must be an http:// or https:// URL with a host")
    return url


class Facts:
    """The alert kwargs every channel shows, read once with defaults.

    >>> Facts("high_cpu_usage", "api", {"severity": "warning", "value": 97.5,
    ...       "threshold": 90.0}).headline()
    '[FIRING] warning high_cpu_usage on api'
    """

    def __init__(self, alert_type: str, deployment_id: str, kwargs: Mapping[str, Any]) -> None:
        self.alert_type = alert_type
        self.deployment_id = str(kwargs.get("deployment_id") or deployment_id)
        self.state = str(kwargs.get("state") or "firing")
        self.resolved = self.state == "resolved"
        self.severity = str(kwargs.get("severity") or "warning")
        self.message = str(kwargs.get("message") or "")
        self.value = kwargs.get("value")
        self.threshold = kwargs.get("threshold")
        self.repeat = bool(kwargs.get("repeat", False))
        self.started_at = _num(kwargs.get("started_at"))
        self.timestamp = _num(kwargs.get("timestamp")) or time.time()
        self.event_id = kwargs.get("event_id")
        self.sequence = kwargs.get("sequence")

    def headline(self) -> str:
        return f"[{self.state.upper()}] {self.severity} {self.alert_type} on {self.deployment_id}"

    def measure(self) -> str | None:
        """``"value 97.5 (threshold 90)"``, or None when the alert has no value."""
        if self.value is None:
            return None
        text = f"value {_fmt(self.value)}"
        return text + (f" (threshold {_fmt(self.threshold)})" if self.threshold is not None else "")


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _num(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None
