"""From config data to handlers: a boring dict from a kind name to a class.

>>> h = build_handler({"type": "webhook", "url": "https://example.com/hook", "name": "ops"})
>>> (h.kind, h.key, h.name)
('webhook', 'ops', 'webhook:example.com')
>>> [h.key for h in build_handlers([{"type": "webhook", "url": "https://example.com/hook"}])]
['webhook:example.com']
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
from crackseg.utils.deployment.delivery.handler_options import HandlerOptionsError
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

    Raises :class:`~.handler_options.HandlerOptionsError` (a :class:`ConfigError`) naming
    every offending key (``path.key``) and the fix.
    """
    if not isinstance(spec, dict):
        raise HandlerOptionsError([(path, "must be a mapping with a 'type' key")])
    kind = spec.get("type")
    if kind not in HANDLER_TYPES:
        raise HandlerOptionsError(
            [(f"{path}.type", f"must be one of {', '.join(HANDLER_TYPES)}, got {kind!r}")]
        )
    options = {k: v for k, v in spec.items() if k != "type"}
    return HANDLER_TYPES[kind].from_config(options, path)


def build_handlers(specs: Sequence[dict[str, Any]], path: str = "handlers") -> list[AlertHandler]:
    """Build a list of handlers, reporting every problem of every one in one error.

    A handler's ``name`` (outbox rows and alert state follow it) defaults to its kind and
    target (``webhook:hooks.example.com``), never its position, so reordering the list
    routes nothing elsewhere. Two handlers with the same name are refused: name them.
    """
    handlers: list[AlertHandler] = []
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        try:
            handler = build_handler(spec, f"{path}[{i}]")
        except ConfigError as exc:  # HandlerOptionsError too: every problem it holds
            problems += exc.problems
            continue
        explicit = handler.key is not None
        if handler.key is None:
            handler.key = handler.default_key()
        if handler.key in seen:
            hint = "" if explicit else "; give each a distinct name:"
            problems.append((f"{path}[{i}].name",
                             f"{handler.key!r} is also the name of {path}[{seen[handler.key]}]{hint}"))  # fmt: skip
            handler.close()
            continue
        seen[handler.key] = i
        handlers.append(handler)
    if problems:
        for h in handlers:
            h.close()
        raise HandlerOptionsError(problems)
    return handlers
