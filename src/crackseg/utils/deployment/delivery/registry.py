"""From config data to handlers: a boring dict from a kind name to a class.

>>> h = build_handler({"type": "webhook", "url": "https://example.com/hook", "key": "ops"})
>>> (h.kind, h.key, h.name)
('webhook', 'ops', 'webhook:example.com')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.channels.alertmanager import AlertmanagerHandler
from crackseg.utils.deployment.delivery.channels.email import EmailHandler
from crackseg.utils.deployment.delivery.channels.log import LoggingAlertHandler
from crackseg.utils.deployment.delivery.channels.slack import SlackHandler
from crackseg.utils.deployment.delivery.channels.webhook import WebhookHandler
from crackseg.utils.deployment.errors import ConfigError

__all__ = ["HANDLER_TYPES", "build_handler", "build_handlers"]

HANDLER_TYPES: dict[str, type[AlertHandler]] = {
    "log": LoggingAlertHandler,
    "webhook": WebhookHandler,
    "slack": SlackHandler,
    "email": EmailHandler,
    "alertmanager": AlertmanagerHandler,
}


def build_handler(spec: dict[str, Any], path: str = "handler") -> AlertHandler:
    """Build one handler from ``{"type": <kind>, ...options}``.

    Raises :class:`ConfigError` naming the offending key (``path.key``) and the fix.
    """
    if not isinstance(spec, dict):
        raise ConfigError(path, "must be a mapping with a 'type' key")
    kind = spec.get("type")
    if kind not in HANDLER_TYPES:
        raise ConfigError(
            f"{path}.type", f"must be one of {', '.join(HANDLER_TYPES)}, got {kind!r}"
        )
    options = {k: v for k, v in spec.items() if k != "type"}
    key = options.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        raise ConfigError(f"{path}.key", "must be a non-empty string")
    return HANDLER_TYPES[kind].from_config(options, path)


def build_handlers(specs: Sequence[dict[str, Any]], path: str = "handlers") -> list[AlertHandler]:
    """Build a list of handlers; each without a ``key`` gets ``<type>-<n>`` (n counts per type).

    Keys are how the outbox finds a handler again after a restart: give an explicit ``key``
    when handlers may be reordered. Raises :class:`ConfigError` on duplicate keys.
    """
    handlers: list[AlertHandler] = []
    seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    for i, spec in enumerate(specs):
        handler = build_handler(spec, f"{path}[{i}]")
        n = counts.get(handler.kind, 0)
        counts[handler.kind] = n + 1
        if handler.key is None:
            handler.key = f"{handler.kind}-{n}"
        if handler.key in seen:
            raise ConfigError(
                f"{path}[{i}].key", f"{handler.key!r} is also used by {path}[{seen[handler.key]}]"
            )
        seen[handler.key] = i
        handlers.append(handler)
    return handlers
