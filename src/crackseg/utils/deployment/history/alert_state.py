"""Alert state that outlives the process: which alerts fire, since when, and who was told.

The monitor writes an :class:`AlertRecord` whenever a firing alert starts, is notified or
repeats, and deletes it when the alert resolves. After a restart (or ``kill -9``) it reads
them back, so a still-failing alert is not paged again as a new incident, keeps its
``started_at``, and one that recovered while the service was down resolves to exactly the
handlers that got its firing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from crackseg.utils.deployment.models import AlertEvent

__all__ = ["AlertRecord", "AlertStateStore", "MemoryAlertState"]


@dataclass(frozen=True)
class AlertRecord:
    """A firing alert as persisted: its last firing event and the handlers that got it."""

    firing: AlertEvent
    notified: tuple[str, ...] = field(default=())

    @property
    def key(self) -> tuple[str, str]:
        return (self.firing.deployment_id, self.firing.alert_type)

    def to_dict(self) -> dict[str, Any]:
        return {"firing": self.firing.to_dict(), "notified": list(self.notified)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertRecord:
        firing = {k: v for k, v in data["firing"].items() if k in AlertEvent.__dataclass_fields__}
        firing["notified"] = tuple(firing.get("notified") or ())  # a list once it was JSON
        return cls(AlertEvent(**firing), tuple(str(k) for k in data.get("notified", ())))


@runtime_checkable
class AlertStateStore(Protocol):
    """Where firing alerts are kept between runs. Thread-safe; writes never block long."""

    def load(self) -> list[AlertRecord]:
        """Every record, as of the last completed write."""
        ...

    def save(self, record: AlertRecord, after: Callable[[], None] | None = None) -> None:
        """Store ``record``; ``after`` runs once it is committed (in the order of calls)."""
        ...

    def delete(
        self, deployment_id: str, alert_type: str, after: Callable[[], None] | None = None
    ) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every write so far is committed; False on timeout."""
        ...

    def close(self) -> None: ...


class MemoryAlertState:
    """An :class:`AlertStateStore` in memory (tests; nothing survives the process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], AlertRecord] = {}

    def load(self) -> list[AlertRecord]:
        with self._lock:
            return list(self._records.values())

    def save(self, record: AlertRecord, after: Callable[[], None] | None = None) -> None:
        with self._lock:
            self._records[record.key] = record
        if after is not None:
            after()

    def delete(
        self, deployment_id: str, alert_type: str, after: Callable[[], None] | None = None
    ) -> None:
        with self._lock:
            self._records.pop((deployment_id, alert_type), None)
        if after is not None:
            after()

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def close(self) -> None:
        pass
