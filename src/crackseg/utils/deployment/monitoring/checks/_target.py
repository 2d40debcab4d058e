"""Check URLs parsed once into the complete request the fast client sends (a GET, or the
method and body a deployment's check asks for)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from crackseg.utils.deployment.version import USER_AGENT

__all__ = ["USER_AGENT", "Target", "parse_target"]

_SAFE = "/%:@!$&'()*+,;=-._~"


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed check URL; ``request`` is the complete request for the fast path."""

    url: str
    https: bool
    host: str
    port: int
    request: bytes

    @property
    def origin(self) -> tuple[bool, str, int]:
        """(https, host, port): what a redirect must keep for credentials to follow it."""
        return (self.https, self.host, self.port)


def parse_target(
    url: str,
    headers: dict[str, str],
    method: str = "GET",
    body: bytes | None = None,
    content_type: str | None = None,
) -> Target | str:
    """Parse ``url`` and build its request; a str is the message for an unusable URL.

    Sends ``Host``, a ``User-Agent`` and ``Accept`` unless ``headers`` sets them, Basic
    auth for ``user:password@`` in the URL, then ``headers``; with ``body``, its
    ``Content-Length`` and (unless ``headers`` sets one) ``content_type``. No
    Accept-Encoding: the body stays plain. Header values are assumed free of CR/LF (the
    caller checks).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"invalid URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "invalid URL: expected http://host[:port]/path or https://..."
    https = parts.scheme == "https"
    host = parts.hostname
    default_port = 443 if https else 80
    port = port or default_port
    path = quote(parts.path or "/", safe=_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_SAFE + "?")
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header += f":{port}"
    given = {k.lower() for k in headers}
    lines = [f"{method} {path} HTTP/1.1\r\n"]
    if "host" not in given:  # a configured Host (virtual hosting) replaces ours
        lines.append(f"Host: {host_header}\r\n")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}\r\n")
    if "accept" not in given:
        lines.append("Accept: application/json, */*;q=0.5\r\n")
    if parts.username is not None and "authorization" not in given:
        cred = f"{parts.username}:{parts.password or ''}".encode()
        lines.append(f"Authorization: Basic {base64.b64encode(cred).decode()}\r\n")
    lines.extend(f"{k}: {v}\r\n" for k, v in headers.items())
    if body is not None:
        if content_type is not None and "content-type" not in given:
            lines.append(f"Content-Type: {content_type}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n")
    elif method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    try:
        request = text.encode("latin-1")
    except UnicodeEncodeError:
        request = text.encode("utf-8")
    return Target(url, https, host, port, request + body if body else request)
