"""Alert channels: one small module per channel behind :class:`~.base.AlertHandler`."""

from .alertmanager import AlertmanagerHandler
from .base import AlertDispatcher, AlertHandler, HandlerStats, RetryPolicy
from .email import EmailHandler
from .log import LoggingAlertHandler
from .registry import HANDLER_TYPES, build_handler, build_handlers
from .slack import SlackHandler
from .webhook import WebhookHandler, verify_signature

__all__ = [
    "HANDLER_TYPES",
    "AlertDispatcher",
    "AlertHandler",
    "AlertmanagerHandler",
    "EmailHandler",
    "HandlerStats",
    "LoggingAlertHandler",
    "RetryPolicy",
    "SlackHandler",
    "WebhookHandler",
    "build_handler",
    "build_handlers",
    "verify_signature",
]
