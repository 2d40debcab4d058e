"""Which handler gets which notification: a handler's :class:`Match` (``match:`` in the file).

Each handler receives what its match accepts; a handler without one receives everything.
Within a field any listed value will do (deployments as names or globs); across fields all
must hold. A resolve goes where its firing went, whatever the matches say by then.

>>> m = Match(deployments=["model-*"], severities=["critical"])
>>> m.accepts("health_check_failed", "model-a", "critical")
True
>>> m.accepts("health_check_failed", "api", "critical"), m.accepts("high_cpu_usage", "model-a", "warning")
(False, False)
>>> Match(events=["rollout"]).accepts("deployment_success", "model-a", "info")
True
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from crackseg.utils.deployment.models import MONITOR_ID, ROLLOUT_EVENTS

__all__ = ["EventKind", "Match", "Routed", "accepts", "event_kind"]

#: ``alerts``: a deployment's alerts; ``rollout``: the orchestrator's events;
#: ``monitor``: the monitor's own alerts (overloaded, its store losing writes).
EventKind = Literal["alerts", "rollout", "monitor"]
_Names = list[str] | None


def event_kind(alert_type: str, deployment_id: str) -> EventKind:
    """What kind of notification an alert of ``alert_type`` about ``deployment_id`` is."""
    if alert_type in ROLLOUT_EVENTS:
        return "rollout"
    if deployment_id == MONITOR_ID:
        return "monitor"
    return "alerts"


class Match(BaseModel):
    """What a handler accepts; a field left out accepts anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Deployment ids or globs (``model-*``).
    deployments: _Names = Field(default=None, min_length=1, max_length=1000)
    #: Alert types (``health_check_failed``, ``deployment_success``...).
    alert_types: _Names = Field(default=None, min_length=1, max_length=100)
    severities: list[Literal["info", "warning", "critical"]] | None = Field(
        default=None, min_length=1
    )
    #: Kinds of notification: ``alerts``, ``rollout``, ``monitor``.
    events: list[EventKind] | None = Field(default=None, min_length=1)

    def accepts(self, alert_type: str, deployment_id: str, severity: str) -> bool:
        """Whether a notification with these facts goes to the handler."""
        if self.events is not None and event_kind(alert_type, deployment_id) not in self.events:
            return False
        if self.alert_types is not None and alert_type not in self.alert_types:
            return False
        if self.severities is not None and severity not in self.severities:
            return False
        return self.deployments is None or any(
            fnmatchcase(deployment_id, pattern) for pattern in self.deployments
        )


class Routed(Protocol):
    """Anything with a ``match`` (an alert handler)."""

    @property
    def match(self) -> Match | None: ...


def accepts(handler: Routed, alert_type: str, deployment_id: str, severity: str) -> bool:
    """Whether ``handler`` takes the notification (True when it has no match)."""
    match = handler.match
    return match is None or match.accepts(alert_type, deployment_id, severity)
