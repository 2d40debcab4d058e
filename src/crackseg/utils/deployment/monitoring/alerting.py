"""The monitor's alert path: from a rule's transition to a record and a notification.

Suppression (silences, maintenance, flapping), the lifecycle's memory of who was told (a
resolve goes to exactly the handlers that got the firing, across restarts through the
alert state store), the monitor's own alerts, and the one door to delivery.

Rollout events come through the same door (:meth:`AlertPath.announce`) so they carry the
same facts to the same handlers; they skip the lifecycle (no resolve follows a one-shot
event, nothing to remember) and suppression (an operator asked for the rollout).

Not thread-safe on its own terms: it takes the monitor's lock around the deployments'
state, and calls the dispatcher and the stores outside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from crackseg.utils.deployment.delivery.dispatcher import AlertDispatcher
from crackseg.utils.deployment.history.alert_state import AlertRecord, AlertStateStore
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.models import MONITOR_ID, AlertEvent, DeploymentMetadata
from crackseg.utils.deployment.monitoring.rules import LifecycleSettings
from crackseg.utils.deployment.monitoring.tracked import MonitoredDeployment

__all__ = ["MONITOR_ID", "OVERLOADED", "AlertPath", "Suppressor", "facts"]

#: The alert type of the monitor's overload (its deployment id: models.MONITOR_ID).
OVERLOADED = "monitor_overloaded"

logger = logging.getLogger("crackseg.utils.deployment.health_monitoring")

Suppressor = Callable[[str, str, float], str | None]


def facts(ev: AlertEvent) -> dict[str, Any]:
    """What a handler is told of ``ev`` besides its type and metadata."""
    return {
        "severity": ev.severity,
        "message": ev.message,
        "value": ev.value,
        "threshold": ev.threshold,
        "state": ev.state,
        "firing": ev.state == "firing",
        "resolved": ev.state == "resolved",
        "repeat": ev.repeat,
        "started_at": ev.started_at,
        "timestamp": ev.timestamp,
        "deployment_id": ev.deployment_id,
    }


class AlertPath:
    """Records and notifies alert transitions; remembers which handlers got each firing."""

    def __init__(
        self,
        lock: threading.RLock,
        store: HistoryStore,
        dispatcher: AlertDispatcher,
        alert_state: AlertStateStore | None,
        settings: LifecycleSettings,
    ) -> None:
        self._lock = lock
        self.store = store
        self.dispatcher = dispatcher
        self.alert_state = alert_state
        self._settings = settings
        self._suppressors: list[Suppressor] = []
        # The monitor's own alerts go through the same lifecycle as a deployment's.
        self.self_entry = self.stand_in(MONITOR_ID, "http://monitor.invalid/", "monitored")
        # Firing alerts of an earlier run, taken back when their deployment is added.
        self._restored: dict[str, list[AlertRecord]] = {}
        for rec in alert_state.load() if alert_state is not None else ():
            self._restored.setdefault(rec.firing.deployment_id, []).append(rec)

    def stand_in(self, deployment_id: str, url: str, state: str = "pending") -> MonitoredDeployment:
        """An entry that is not checked: it only carries alerts (the monitor's own, orphans')."""
        meta = DeploymentMetadata(deployment_id=deployment_id, state=state)
        return MonitoredDeployment(
            deployment_id, url, None, 1.0, 1.0, {}, self._settings, meta
        )  # fmt: skip

    def add_suppressor(self, fn: Suppressor) -> None:
        with self._lock:
            self._suppressors.append(fn)

    # ------------------------------------------------------------ restarts
    def restore(self, entry: MonitoredDeployment) -> list[AlertRecord]:
        """Take back ``entry``'s firing alerts of an earlier run (call before it is checked);
        then :meth:`announce_restored` with what this returns, once it is monitored."""
        with self._lock:
            records = self._restored.pop(entry.deployment_id, [])
        now_mono, now = time.monotonic(), time.time()
        for rec in records:
            # Its next repeat is due where it would have been without the restart.
            entry.tracker.restore(rec.firing, now_mono - max(0.0, now - rec.firing.timestamp))
            if rec.notified:
                entry.notified[rec.firing.alert_type] = set(rec.notified)
        return records

    def announce_restored(self, entry: MonitoredDeployment, records: list[AlertRecord]) -> None:
        """Tell the handlers that got them that these firings are still firing."""
        for rec in records:
            if rec.notified:
                f = rec.firing
                self.dispatcher.restore(rec.notified, f.alert_type, entry.metadata, **facts(f))

    def resolve_unmonitored(self) -> int:
        """Resolve restored alerts whose deployment was not added (see the monitor)."""
        with self._lock:
            orphans = [r for recs in self._restored.values() for r in recs]
            self._restored.clear()
        now = time.time()
        for rec in orphans:
            f = rec.firing
            entry = self.stand_in(f.deployment_id, "http://unmonitored")
            entry.tracker.restore(f, 0.0)
            entry.notified[f.alert_type] = set(rec.notified)
            self.resolve_all(entry, "no longer monitored", now)
        return len(orphans)

    def resolve_all(
        self, entry: MonitoredDeployment, reason: str, now: float | None = None
    ) -> None:
        """Resolve every firing alert of ``entry`` (its monitoring ends), to who got it."""
        with self._lock:
            events = entry.resolve_all(time.time() if now is None else now, reason)
        for ev in events:
            self.emit(entry, ev)

    # ------------------------------------------------------------ transitions
    def held(self, entry: MonitoredDeployment, events: list[AlertEvent]) -> list[AlertEvent]:
        """Firing alerts nobody was told of (suppressed until now), not moved by ``events``:
        tried again each check, so the end of a silence, a maintenance window or flapping
        sends them. Under the monitor's lock."""
        if not entry.tracker.tracking or len(entry.notified) >= entry.tracker.firing_count():
            return []
        moved = {ev.alert_type for ev in events}
        return [
            a
            for a in entry.tracker.active()
            if not entry.notified.get(a.alert_type) and a.alert_type not in moved
        ]

    def _suppression(self, entry: MonitoredDeployment, ev: AlertEvent) -> str | None:
        if ev.alert_type == "health_check_failed" and entry.flapping is not None:
            return "flapping"
        with self._lock:
            suppressors = list(self._suppressors)
        for fn in suppressors:
            try:
                reason = fn(ev.deployment_id, ev.alert_type, ev.timestamp)
            except Exception:
                logger.exception("alert suppressor failed; not suppressing")
                reason = None
            if reason:
                return reason
        return None

    def emit(self, entry: MonitoredDeployment, ev: AlertEvent) -> None:
        """Record one transition and notify: a firing to every handler unless suppressed, a
        resolve to exactly the handlers that got the firing (never suppressed).

        With an alert state store the notification leaves only once the state saying so is
        committed (in order, on the store's thread): a kill -9 between the two never pages
        twice after the restart.
        """
        if ev.state == "resolved":
            with self._lock:
                keys = entry.notified.pop(ev.alert_type, set())
            if not keys:
                ev.suppressed_reason = "its firing reached no handler"
            ev.notified = tuple(sorted(keys))
            self.store.add_alert(ev)
            send = self._sender(entry, ev, keys) if keys else None
            if self.alert_state is not None:
                self.alert_state.delete(ev.deployment_id, ev.alert_type, after=send)
            elif send is not None:
                send()
            return
        if not ev.suppressed_reason:
            ev.suppressed_reason = self._suppression(entry, ev)
        keys = (
            set()
            if ev.suppressed_reason
            else set(self.dispatcher.route(ev.alert_type, ev.deployment_id, ev.severity))
        )
        ev.notified = tuple(sorted(keys))
        self.store.add_alert(ev)
        with self._lock:
            if entry.tracker.firing(ev.alert_type) is None:
                return  # resolved meanwhile (removed while notifying)
            notified = entry.notified.get(ev.alert_type, set()) | keys
            if notified:
                entry.notified[ev.alert_type] = notified
            record = AlertRecord(ev, tuple(sorted(notified)))
        send = self._sender(entry, ev, keys) if keys else None
        if self.alert_state is not None:
            self.alert_state.save(record, after=send)
        elif send is not None:
            send()

    def _sender(
        self, entry: MonitoredDeployment, ev: AlertEvent, keys: set[str]
    ) -> Callable[[], None]:
        told, metadata = facts(ev), entry.metadata

        def send() -> None:
            self.dispatcher.dispatch(ev.alert_type, metadata, handler_keys=keys, **told)

        return send

    def emit_held(self, entry: MonitoredDeployment, firing: AlertEvent, now: float) -> None:
        """Send a firing that was held back, if nothing holds it back any more."""
        probe = AlertEvent(firing.deployment_id, firing.alert_type, firing.severity,
                           firing.state, firing.message, firing.value, firing.threshold,
                           started_at=firing.started_at, timestamp=now)  # fmt: skip
        if not self.dispatcher.handler_keys() or self._suppression(entry, probe) is not None:
            return
        self.emit(entry, probe)

    def announce(
        self,
        alert_type: str,
        metadata: DeploymentMetadata,
        severity: str,
        message: str,
        started_at: float | None = None,
    ) -> list[str]:
        """Hand a one-shot event (a rollout's start, success, rollback) to every handler
        whose ``match`` accepts it, with the facts an alert carries; returns the handler keys
        it was queued for."""
        now = time.time()
        ev = AlertEvent(metadata.deployment_id, alert_type, severity, "firing", message,
                        None, None, started_at=now if started_at is None else started_at,
                        timestamp=now)  # fmt: skip
        return self.dispatcher.dispatch(alert_type, metadata, **facts(ev))

    # ------------------------------------------------------------ the monitor's own
    def self_alert(
        self, alert_type: str, message: str, *, firing: bool, value: float | None = None,
        threshold: float | None = None,
    ) -> bool:  # fmt: skip
        """Fire or resolve an alert of the monitor itself; whether anything changed."""
        entry, now = self.self_entry, time.time()
        with self._lock:
            current = entry.tracker.firing(alert_type)
            if firing == (current is not None):
                return False
            if firing:
                ev = AlertEvent(MONITOR_ID, alert_type, "critical", "firing", message, value,
                                threshold, started_at=now, timestamp=now)  # fmt: skip
                entry.tracker.open(ev)
            else:
                entry.tracker.close(alert_type)
                assert current is not None
                ev = AlertEvent(MONITOR_ID, alert_type, "critical", "resolved", message, value,
                                current.threshold, started_at=current.started_at,
                                timestamp=now, resolved_at=now)  # fmt: skip
        self.emit(entry, ev)
        return True
