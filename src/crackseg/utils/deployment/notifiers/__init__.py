"""Alert channels: one small module per channel behind :class:`~.base.AlertHandler`."""

from .base import AlertHandler
from .log import LoggingAlertHandler

__all__ = ["AlertHandler", "LoggingAlertHandler"]
