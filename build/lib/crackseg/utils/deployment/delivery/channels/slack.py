"""Alerts as Slack incoming-webhook messages, coloured by severity, green when resolved.

The webhook URL is the credential (anyone holding it can post), so it never appears in
the handler's name, its repr, its errors or a log line.
"""

from __future__ import annotations

import json
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.handler_options import (
    Duration,
    HandlerOptions,
    secret_problems,
    secret_value,
    url_problems,
)
from crackseg.utils.deployment.delivery.options import Facts, check_url, host_of, http_post
from crackseg.utils.deployment.errors import require_positive
from crackseg.utils.deployment.models import DeploymentMetadata

__all__ = ["COLORS", "SlackHandler", "SlackOptions"]

#: Attachment colour per severity; ``resolved`` wins over any severity.
COLORS = {
    "critical": "#d00000",
    "warning": "#f2a900",
    "info": "#439fe0",
    "resolved": "#2eb886",
}


class SlackOptions(HandlerOptions):
    """``{type: slack, webhook_url | webhook_url_env, channel, username, icon_emoji,
    timeout}``."""

    webhook_url: str | None = None
    webhook_url_env: str | None = None
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None
    timeout: Duration = 10.0

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        out += secret_problems("webhook_url", self.webhook_url, self.webhook_url_env,
                               required=True)  # fmt: skip
        if not out:
            out += url_problems("webhook_url", secret_value(self.webhook_url, self.webhook_url_env))
        return out


class SlackHandler(AlertHandler):
    """Posts one message per alert to a Slack incoming webhook.

    The message has a one-line ``text`` (what notifications and screen readers show) and
    one attachment with the colour, the deployment, the value against its threshold and
    the message; a resolved notice says so in green.

    >>> SlackHandler("https://hooks.slack.com/services/T0/B0/secret").name
    'slack:hooks.slack.com'
    """

    kind = "slack"

    def __init__(
        self,
        webhook_url: str,
        *,
        channel: str | None = None,
        username: str | None = None,
        icon_emoji: str | None = None,
        timeout: float = 10.0,
        send_resolved: bool = True,
        key: str | None = None,
    ) -> None:
        self._url = check_url(webhook_url, "webhook_url")
        self.channel = channel
        self.username = username
        self.icon_emoji = icon_emoji
        require_positive("timeout", timeout)
        self.timeout = timeout
        self.send_resolved = send_resolved
        self.key = key

    Options = SlackOptions

    @classmethod
    def from_options(cls, opts: SlackOptions) -> SlackHandler:
        return cls(
            str(secret_value(opts.webhook_url, opts.webhook_url_env)),
            channel=opts.channel,
            username=opts.username,
            icon_emoji=opts.icon_emoji,
            timeout=opts.timeout,
        )

    @property
    def target(self) -> str:
        return host_of(self._url)

    @property
    def name(self) -> str:
        return f"slack:{host_of(self._url)}"

    def secrets(self) -> tuple[str, ...]:
        return (self._url,)

    def payload(
        self, alert_type: str, metadata: DeploymentMetadata, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The JSON message posted to Slack."""
        f = Facts(alert_type, metadata.deployment_id, kwargs)
        color = COLORS["resolved"] if f.resolved else COLORS.get(f.severity, COLORS["warning"])
        if f.resolved:
            title = f"Resolved: {alert_type} on {f.deployment_id}"
        else:
            title = f"{f.severity.upper()}: {alert_type} on {f.deployment_id}"
            if f.repeat:
                title += " (still firing)"
        fields = [
            {"title": "Deployment", "value": f.deployment_id, "short": True},
            {"title": "Severity", "value": f.severity, "short": True},
        ]
        if f.value is not None:
            fields.append({"title": "Value", "value": _num(f.value), "short": True})
        if f.threshold is not None:
            fields.append({"title": "Threshold", "value": _num(f.threshold), "short": True})
        if metadata.version:
            fields.append({"title": "Version", "value": metadata.version, "short": True})
        attachment: dict[str, Any] = {
            "color": color,
            "fallback": f.headline(),
            "title": title,
            "text": f.message,
            "fields": fields,
            "footer": "crackseg-monitor",
            "ts": int(f.timestamp),
        }
        measure = f.measure()
        text = f"{title}" + (f" - {measure}" if measure and not f.resolved else "")
        body: dict[str, Any] = {"text": text, "attachments": [attachment]}
        for k in ("channel", "username", "icon_emoji"):
            if getattr(self, k):
                body[k] = getattr(self, k)
        return body

    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        body = json.dumps(self.payload(alert_type, metadata, kwargs), default=str).encode()
        http_post(self._url, body, {"Content-Type": "application/json"}, self.timeout, what="slack")


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
