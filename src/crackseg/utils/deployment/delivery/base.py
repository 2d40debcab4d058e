"""The alert-handler interface and the delivery that keeps handlers off the check path.

Every channel implements :meth:`AlertHandler.send_alert` (the spec's signature). The
monitor never calls a handler on its event loop: :class:`AlertDispatcher` (in
:mod:`.dispatcher`, one :mod:`.worker` per handler) gives each handler a worker thread behind a bounded queue, retries with
backoff, dead-letters what cannot be delivered and, with an outbox, survives restarts. A
handler that raises or blocks never stops or delays checking, nor the other handlers.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from crackseg.utils.deployment.delivery.handler_options import (
    HandlerOptions,
    HandlerOptionsError,
    option_problems,
    with_secret_files,
)
from crackseg.utils.deployment.delivery.retry import RetryPolicy
from crackseg.utils.deployment.delivery.routing import Match
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.models import DeploymentMetadata

logger = logging.getLogger("crackseg.utils.deployment.alerts")


class AlertHandler(ABC):
    """Delivers alerts to one channel.

    ``send_alert`` receives the alert type (``health_check_failed``, ``high_cpu_usage``,
    ``deployment_success``, ...), the deployment's metadata, and keyword facts: at least
    ``severity``, ``message``, ``value``, ``threshold``, ``state`` (``"firing"`` or
    ``"resolved"``), ``firing`` and ``resolved`` (bools); through the dispatcher also
    ``event_id`` (dedupe key) and ``sequence`` (per-deployment order). Raise to report a
    failed delivery: :class:`~..errors.NotifierError` with ``permanent=True`` when trying
    again cannot help (it is dead-lettered at once), anything else is retried.

    >>> class PrintHandler(AlertHandler):
    ...     def send_alert(self, alert_type, metadata, **kwargs):
    ...         print(alert_type, metadata.deployment_id, kwargs["state"])
    """

    #: Whether resolved notices go to this handler.
    send_resolved: bool = True
    #: How long failed notifications are retried; None uses the dispatcher's policy.
    retry: RetryPolicy | None = None
    #: The registry name of the channel (``"webhook"``, ...); part of the default key.
    kind: str = ""
    #: Stable identity across restarts: the durable outbox matches rows to handlers by it.
    #: None lets the dispatcher pick ``<kind>-<n>``.
    key: str | None = None
    #: What this handler receives (:class:`~.routing.Match`: deployments, alert types,
    #: severities, event kinds); None: everything.
    match: Match | None = None

    @abstractmethod
    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        """Deliver one alert; raise on failure."""

    @property
    def name(self) -> str:
        """A label for status and metrics; never contains a secret."""
        return type(self).__name__

    def restore_firing(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        """An alert this handler was sent before a restart is still firing; nothing is sent.

        Channels that keep firing alerts alive (Alertmanager) take it back; others ignore it.
        """

    @property
    def target(self) -> str:
        """Where it delivers, without secrets (a host, a logger); part of its default key."""
        return ""

    def default_key(self) -> str:
        """The identity used when none is given: the kind and target, never a position."""
        kind = self.kind or type(self).__name__.lower()
        return f"{kind}:{self.target}" if self.target else kind

    def close(self) -> None:
        """Release resources. Safe to call twice."""

    #: The channel's options as the configuration file writes them.
    Options: ClassVar[type[HandlerOptions]] = HandlerOptions

    @classmethod
    def from_config(cls, spec: dict[str, Any], path: str = "handler") -> AlertHandler:
        """Build from a config mapping (without ``type``); see :func:`.registry.build_handler`.

        Raises :class:`~.handler_options.HandlerOptionsError` listing every problem, each
        named ``path.key``.
        """
        problems = option_problems(cls.Options, spec)
        if problems:
            raise HandlerOptionsError([(f"{path}.{field}", what) for field, what in problems])
        opts = cls.Options.model_validate(with_secret_files(cls.Options, spec)[0])
        try:
            handler = cls.from_options(opts)
        except ConfigError as exc:
            raise HandlerOptionsError(
                [
                    (f if f.startswith(f"{path}.") else f"{path}.{f}", what)
                    for f, what in exc.problems
                ]
            ) from None
        handler.key = opts.identity
        handler.send_resolved = opts.send_resolved
        handler.match = opts.match
        if opts.retry is not None:
            handler.retry = opts.retry.policy()
        return handler

    @classmethod
    def from_options(cls, opts: Any) -> AlertHandler:
        """Build from validated :attr:`Options` (``name``, ``send_resolved`` and ``retry``
        are applied by :meth:`from_config`)."""
        raise ConfigError("type", f"{cls.__name__} cannot be built from a config file")

    def extra_stats(self) -> dict[str, Any]:
        """Channel-specific counters shown beside the dispatcher's (no secrets)."""
        return {}

    def secrets(self) -> tuple[str, ...]:
        """Strings (URLs, tokens, passwords) to mask wherever an error of this handler shows."""
        return ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


__all__ = ["AlertHandler"]
