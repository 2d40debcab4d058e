"""The one redactor: keeps secrets out of every text that leaves the process.

URLs, redirect Locations, error messages, logs, store rows, exports, API answers and
notifications all pass through these functions, which share one list of secret words
(:data:`SECRET_WORDS`). A name (query key, header, config key) is secret when it
contains one of them; over-masking a harmless ``?keyword=`` is the cheap mistake.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "SECRET_WORDS",
    "is_secret_key",
    "redact_text",
    "redact_url",
    "redact_value",
    "strip_url",
]

MASK = "***"
#: Substrings that make a name secret: ``api_key``, ``X-Auth-Token``, ``routing_key``,
#: ``Authorization``, ``Cookie``, ``session_id``, ``?sig=``, ``headers.X-Api-Key``...
SECRET_WORDS = (
    "password",
    "passwd",
    "token",
    "secret",
    "key",
    "auth",
    "cookie",
    "session",
    "credential",
    "signature",
    "sig",
    "header",
)

_SECRET_RE = re.compile("|".join(SECRET_WORDS), re.I)
_URL_RE = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# Outside URLs: "Authorization: Bearer x", "Cookie: a=b", "Bearer x", "token=x".
_HEADER_RE = re.compile(r"(?i)\b((?:proxy-)?authorization|(?:set-)?cookie)(\s*[:=]\s*)[^\r\n]+")
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
_PAIR_RE = re.compile(
    r"(?i)\b([\w.-]*(?:" + "|".join(SECRET_WORDS) + r")[\w.-]*)(\s*=\s*)(?!\*\*\*)([^\s&,;'\"]+)"
)


def is_secret_key(name: str) -> bool:
    """True when ``name`` (a query key, header or config key) names a secret."""
    return _SECRET_RE.search(name) is not None


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
        query = urlencode([(k, _query_value(k, v)) for k, v in pairs], safe="*")
    fragment = parts.fragment
    if fragment and "=" in fragment:
        # OAuth implicit flows put access_token=... in the fragment.
        pairs = parse_qsl(fragment, keep_blank_values=True)
        fragment = urlencode([(k, MASK if is_secret_key(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _query_value(key: str, value: str) -> str:
    if is_secret_key(key):
        return MASK
    if "=" in value or "://" in value:
        return _redact(value, True)  # a URL in a query (?next=https://...?token=...)
    return value


def strip_url(url: str) -> str:
    """Only ``scheme://host[:port]/***``: for URLs whose path is the credential (webhooks).

    >>> strip_url("https://hooks.slack.com/services/T0/B0/xyz")
    'https://hooks.slack.com/***'
    """
    m = re.match(r"^([a-z][a-z0-9+.-]*://)(?:[^/@?#]*@)?([^/?#]*)", url, re.I)
    return f"{m.group(1)}{m.group(2)}/{MASK}" if m else MASK


def redact_text(text: str, secrets: Iterable[str] = (), *, url_paths: bool = True) -> str:
    """``text`` with known ``secrets``, URL credentials and secret-looking pairs masked.

    ``url_paths=False`` cuts every URL to scheme and host (a webhook's path is its key).

    >>> redact_text("GET http://h/x?token=abc failed: Authorization: Bearer abcdef")
    'GET http://h/x?token=*** failed: Authorization: ***'
    >>> redact_text("POST https://hooks.slack.com/services/T0/B0/xyz failed", url_paths=False)
    'POST https://hooks.slack.com/*** failed'
    """
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    if not secrets:
        return _redact_cached(text, url_paths) if len(text) <= 1024 else _redact(text, url_paths)
    return _redact(text, url_paths)


def _redact(text: str, url_paths: bool) -> str:
    if "://" in text:
        fn = redact_url if url_paths else strip_url
        text = _URL_RE.sub(lambda m: fn(m.group(0)), text)
    text = _HEADER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _PAIR_RE.sub(_mask_pair, text)


def _mask_pair(m: re.Match[str]) -> str:
    # "key: value" inside a masked URL or a "***" value stays as it is.
    if "://" in m.group(3) or m.group(3).startswith(MASK):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{MASK}"


# Statuses and errors repeat on every refresh; redaction is the costliest step of
# listing 1,000 statuses, so short texts are remembered.
_redact_cached = functools.lru_cache(maxsize=4096)(_redact)


def redact_value(key: str, value: Any) -> Any:
    """Plain data (config, handler options) with secret values masked, recursively.

    A value is masked when its key names a secret; a URL under a ``*url*`` or
    ``*webhook*`` key keeps only scheme and host (the URL itself is the credential).

    >>> redact_value("", {"url": "https://h/T/B/x", "api_key": "k", "retries": 3})
    {'url': 'https://h/***', 'api_key': '***', 'retries': 3}
    """
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(key, v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    if is_secret_key(key):
        return MASK
    if "url" in key.lower() or "webhook" in key.lower():
        return strip_url(str(value))
    return value
