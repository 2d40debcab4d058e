"""The JSON export: the spec's format, written atomically with orjson.

The monitor's report (its one caller is :mod:`.monitor`), so it lives beside the monitor
and reads its lifecycle settings from here, not from the history package below.

orjson serialises the slotted result dataclasses natively, ~10x faster than the stdlib
(docs/performance.md): a million history records export in well under the 3 s budget.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from crackseg.utils.deployment.files import atomic_write
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.monitoring.rules import LifecycleSettings

__all__ = ["write_export"]


def write_export(
    path: Path,
    store: HistoryStore,
    configs: dict[str, dict[str, Any]],
    statuses: dict[str, dict[str, Any]],
    thresholds: dict[str, float],
    settings: LifecycleSettings,
    since: float | None = None,
) -> Path:
    """Write the export to ``path`` (parents created) via a temporary file renamed into place."""
    deployments: dict[str, Any] = {}
    for dep_id, cfg in configs.items():
        deployments[dep_id] = {
            **cfg,
            "status": statuses.get(dep_id),
            "health_history": _history(store, "health", dep_id, since),
            "resource_history": _history(store, "resource", dep_id, since),
            "alert_history": store.alert_history(dep_id, since=since),
        }
    data = {
        "timestamp": time.time(),
        "monitored_deployments": deployments,
        "alert_history": store.alert_history(None, since=since),
        "configuration": {
            "alert_thresholds": thresholds,
            "failure_threshold": settings.failure_threshold,
            "success_threshold": settings.success_threshold,
            "repeat_interval": settings.repeat_interval,
        },
    }
    payload = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    return atomic_write(path, payload)


def _history(store: HistoryStore, kind: str, deployment_id: str, since: float | None) -> Any:
    # A store that can give its rows as JSON already (the in-memory one, from its columns)
    # skips making a million objects only to serialise them.
    as_json = getattr(store, f"_{kind}_history_json", None)
    if as_json is not None:
        return orjson.Fragment(as_json(deployment_id, since))
    return getattr(store, f"{kind}_history")(deployment_id, since=since)
