"""Alerts as readable one-line log records."""

from __future__ import annotations

import logging
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.handler_options import HandlerOptions
from crackseg.utils.deployment.models import DeploymentMetadata

__all__ = ["LogOptions", "LoggingAlertHandler"]


class LogOptions(HandlerOptions):
    """``{type: log, logger: crackseg.alerts}``."""

    logger: str = "crackseg.alerts"


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

    Options = LogOptions

    @classmethod
    def from_options(cls, opts: LogOptions) -> LoggingAlertHandler:
        return cls(opts.logger)

    @property
    def target(self) -> str:
        return self.logger.name

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
        about = {"deployment_id": metadata.deployment_id, "alert_type": alert_type}
        self.logger.log(level, " ".join(parts), extra=about)


def _num(v: object) -> str:
    """601.480876 -> 601.5: a log line is read by people."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)
