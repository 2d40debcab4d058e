"""Alerts as a signed JSON POST to any URL.

The body is one JSON object (see :meth:`WebhookHandler.payload`) with an ``event_id`` to
dedupe on and a per-deployment ``sequence`` to order by: delivery is at-least-once, so a
receiver may see an event twice. With a ``secret`` each request carries

- ``X-CrackSeg-Timestamp``: unix seconds when it was signed, and
- ``X-CrackSeg-Signature``: ``sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>``,

so a receiver can check both who sent it and that it is fresh (:func:`verify_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.handler_options import (
    Duration,
    HandlerOptions,
    header_problems,
    secret_problems,
    secret_value,
    url_problems,
)
from crackseg.utils.deployment.delivery.options import Facts, check_url, host_of, http_post
from crackseg.utils.deployment.errors import ConfigError, require_positive
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.redact import redact_url

__all__ = [
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookHandler",
    "WebhookOptions",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "X-CrackSeg-Signature"
TIMESTAMP_HEADER = "X-CrackSeg-Timestamp"
EVENT_HEADER = "X-CrackSeg-Event-Id"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """True if ``signature`` is ours for ``body`` and ``timestamp`` is within ``tolerance_s``.

    >>> verify_signature("s", b"{}", "100", sign("s", "100", b"{}"), now=150)
    True
    """
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookOptions(HandlerOptions):
    """``{type: webhook, url | url_env, secret | secret_env, headers, timeout,
    include_metadata}``."""

    url: str | None = None
    url_env: str | None = None
    secret: str | None = None
    secret_env: str | None = None
    headers: dict[str, str] = {}
    timeout: Duration = 10.0
    include_metadata: bool = True

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        out += secret_problems("url", self.url, self.url_env, required=True)
        out += secret_problems("secret", self.secret, self.secret_env, required=False)
        if not out:
            out += url_problems("url", secret_value(self.url, self.url_env))
        return out + header_problems(self.headers)


class WebhookHandler(AlertHandler):
    """POSTs each alert as JSON to ``url``, optionally HMAC-signed.

    A 4xx answer (other than 408/429) is a permanent failure; 5xx, 429, timeouts and
    refused connections are retried by the dispatcher. ``headers`` may hold credentials:
    they are sent, never shown.

    >>> h = WebhookHandler("https://hooks.example.com/alert?token=abc", secret="s3")
    >>> h.name
    'webhook:hooks.example.com'
    """

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secret: str | None = None,
        timeout: float = 10.0,
        send_resolved: bool = True,
        key: str | None = None,
        include_metadata: bool = True,
    ) -> None:
        self._url = check_url(url, "url")
        self._headers = dict(headers or {})
        for field, problem in header_problems(self._headers):
            raise ConfigError(field, problem)
        self._secret = secret
        require_positive("timeout", timeout)
        self.timeout = timeout
        self.send_resolved = send_resolved
        self.key = key
        self.include_metadata = include_metadata

    Options = WebhookOptions

    @classmethod
    def from_options(cls, opts: WebhookOptions) -> WebhookHandler:
        return cls(
            str(secret_value(opts.url, opts.url_env)),
            headers=opts.headers,
            secret=secret_value(opts.secret, opts.secret_env),
            timeout=opts.timeout,
            include_metadata=opts.include_metadata,
        )

    @property
    def target(self) -> str:
        return host_of(self._url)

    @property
    def name(self) -> str:
        return f"webhook:{host_of(self._url)}"

    def secrets(self) -> tuple[str, ...]:
        return (self._url, *(v for v in (self._secret,) if v), *self._headers.values())

    def payload(
        self, alert_type: str, metadata: DeploymentMetadata, kwargs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The JSON object sent: the alert's facts, ids, and the deployment's metadata."""
        f = Facts(alert_type, metadata.deployment_id, kwargs)
        body: dict[str, Any] = {
            "version": 1,
            "event_id": f.event_id,
            "sequence": f.sequence,
            "alert_type": alert_type,
            "state": f.state,
            "severity": f.severity,
            "deployment_id": f.deployment_id,
            "message": f.message,
            "value": f.value,
            "threshold": f.threshold,
            "repeat": f.repeat,
            "started_at": f.started_at,
            "timestamp": f.timestamp,
        }
        if self.include_metadata:
            meta = metadata.to_dict()
            # The receiver is a third party: tokens in our URLs are none of its business.
            for field in ("health_check_url", "deployment_url"):
                if meta.get(field):
                    meta[field] = redact_url(meta[field])
            body["metadata"] = meta
        return body

    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        body = json.dumps(
            self.payload(alert_type, metadata, kwargs), default=str, separators=(",", ":")
        ).encode()
        headers = {"Content-Type": "application/json", **self._headers}
        if kwargs.get("event_id"):
            headers[EVENT_HEADER] = str(kwargs["event_id"])
        if self._secret:
            ts = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = ts
            headers[SIGNATURE_HEADER] = sign(self._secret, ts, body)
        http_post(self._url, body, headers, self.timeout, what="webhook")
