"""Reading a rollout's persisted state from outside the process running it (the kill -9
recovery tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crackseg.utils.deployment.history.sqlite.rollouts import RolloutStateStore
from tests.support.wait import wait_until


def wait_for_canary_weight(
    db: Path | str, deployment_id: str, weight: int, timeout: float
) -> dict[str, Any]:
    """The in-flight state row of ``deployment_id`` once its canary serves ``weight`` %."""
    state = RolloutStateStore(str(db))
    try:

        def at_weight() -> dict[str, Any] | None:
            rows = [r for r in state.in_flight() if r["deployment_id"] == deployment_id]
            if rows and rows[0]["metadata"]["extra"].get("canary_weight") == weight:
                return rows[0]
            return None

        row: dict[str, Any] = wait_until(at_weight, timeout, f"the canary at {weight} %")
        return row
    finally:
        state.close()
