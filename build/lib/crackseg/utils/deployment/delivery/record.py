"""The one record of a queued notification: what the outbox stores, the worker delivers and
the dead-letter list shows."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from crackseg.utils.deployment.models import DeploymentMetadata

__all__ = ["Notification", "order_counter"]

#: Arrival order across all handlers: the oldest ready notification goes first.
order_counter = itertools.count()


@dataclass(eq=False)
class Notification:
    """One notification for one handler. ``row_id`` is set once the outbox stored it."""

    handler_key: str
    alert_type: str
    metadata: DeploymentMetadata
    kwargs: dict[str, Any]
    created_at: float = field(default_factory=time.time)
    attempts: int = 0
    last_error: str | None = None
    dead_at: float | None = None
    row_id: int | None = None
    order: int = field(default_factory=lambda: next(order_counter))

    @property
    def deployment_id(self) -> str:
        return self.metadata.deployment_id

    @property
    def event_id(self) -> str:
        return str(self.kwargs.get("event_id") or "")

    @property
    def sequence(self) -> int:
        try:
            return int(self.kwargs.get("sequence") or 0)
        except (TypeError, ValueError):
            return 0

    @property
    def state(self) -> str | None:
        state = self.kwargs.get("state")
        return None if state is None else str(state)

    @property
    def incident(self) -> tuple[str, str, Any]:
        """What a firing and its resolve share: deployment, alert type, start."""
        return (self.deployment_id, self.alert_type, self.kwargs.get("started_at"))

    def sort_key(self) -> tuple[int, int]:
        """Order within a deployment: its sequence, then arrival."""
        return (self.sequence, self.order)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the metadata body: what a status page shows of a dead letter."""
        return {
            "id": self.row_id,
            "handler_key": self.handler_key,
            "deployment_id": self.deployment_id,
            "alert_type": self.alert_type,
            "state": self.state,
            "event_id": self.kwargs.get("event_id"),
            "sequence": self.kwargs.get("sequence"),
            "created_at": self.created_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "dead_at": self.dead_at,
        }

    @staticmethod
    def metadata_from(data: dict[str, Any], deployment_id: str) -> DeploymentMetadata:
        try:
            return DeploymentMetadata.from_dict(data)
        except (TypeError, ValueError, KeyError):
            # Written by another version of the model: the id is what matters.
            return DeploymentMetadata(deployment_id=deployment_id)
