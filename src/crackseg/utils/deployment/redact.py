"""Keep secrets out of logs, statuses and exports."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "redact_url"]


_SECRET_KEYS = ("token", "key", "secret", "password", "passwd", "signature", "sig", "auth")
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with its password and secret-looking query values masked.

    >>> redact_url("http://user:pw@host/health?token=abc&x=1")
    'http://user:***@host/health?token=***&x=1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, MASK if any(s in k.lower() for s in _SECRET_KEYS) else v) for k, v in pairs],
            safe="*",
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
