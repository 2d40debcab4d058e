"""Alerts as readable one-line log records."""

from __future__ import annotations

import logging
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.options import opt_bool, reject_unknown
from crackseg.utils.deployment.models import DeploymentMetadata

__all__ = ["LoggingAlertHandler"]


class LoggingAlertHandler(AlertHandler):
    """Writes each alert as one line to a logger (``crackseg.alerts`` by default).

    Critical alerts log at ERROR, warnings at WARNING, info at INFO; a resolved notice logs
    at the level of the firing it ends (it carries that severity), so whoever sees one sees
    the other.

    >>> handler = LoggingAlertHandler()
    """

    kind = "log"

    def __init__(
        self,
        logger_name: str = "crackseg.alerts",
        *,
        key: str | None = None,
        send_resolved: bool = True,
    ) -> None:
        self.logger = logging.getLogger(logger_name)
        self.key = key
        self.send_resolved = send_resolved

    @classmethod
    def from_config(cls, spec: dict[str, Any], path: str = "handler") -> LoggingAlertHandler:
        """Build from ``{"logger": "crackseg.alerts", "key": ..., "send_resolved": true}``."""
        reject_unknown(spec, ("logger", "key", "send_resolved"), path)
        return cls(
            str(spec.get("logger", "crackseg.alerts")),
            key=spec.get("key"),
            send_resolved=opt_bool(spec, "send_resolved", True, path),
        )

    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        state = kwargs.get("state", "firing")
        severity = kwargs.get("severity", "warning")
        if severity == "critical":
            level = logging.ERROR
        elif severity == "info":
            level = logging.INFO
        else:
            level = logging.WARNING
        parts = [f"[{state.upper()}] {alert_type} deployment={metadata.deployment_id}"]
        parts.append(f"severity={severity}")
        if kwargs.get("value") is not None:
            parts.append(f"value={_num(kwargs['value'])}")
        if kwargs.get("threshold") is not None:
            parts.append(f"threshold={_num(kwargs['threshold'])}")
        if kwargs.get("message"):
            parts.append(f"- {kwargs['message']}")
        self.logger.log(level, " ".join(parts))


def _num(v: object) -> str:
    """601.480876 -> 601.5: a log line is read by people."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)
