"""Alert channels: one small module per channel behind :class:`~.base.AlertHandler`."""

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.channels.alertmanager import AlertmanagerHandler
from crackseg.utils.deployment.delivery.channels.email import EmailHandler
from crackseg.utils.deployment.delivery.channels.log import LoggingAlertHandler
from crackseg.utils.deployment.delivery.channels.slack import SlackHandler
from crackseg.utils.deployment.delivery.channels.webhook import WebhookHandler, verify_signature
from crackseg.utils.deployment.delivery.dispatcher import AlertDispatcher
from crackseg.utils.deployment.delivery.registry import HANDLER_TYPES, build_handler, build_handlers
from crackseg.utils.deployment.delivery.retry import RetryPolicy
from crackseg.utils.deployment.delivery.routing import Match
from crackseg.utils.deployment.delivery.worker import HandlerStats

__all__ = [
    "HANDLER_TYPES",
    "AlertDispatcher",
    "AlertHandler",
    "AlertmanagerHandler",
    "EmailHandler",
    "HandlerStats",
    "LoggingAlertHandler",
    "Match",
    "RetryPolicy",
    "SlackHandler",
    "WebhookHandler",
    "build_handler",
    "build_handlers",
    "verify_signature",
]
