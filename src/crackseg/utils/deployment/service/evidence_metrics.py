"""``crackseg_rollout_evidence``: the evidence of each environment's latest judged rollout.

One gauge family, labels ``environment`` (bounded by the environments deployed to) and
``quantity`` (a fixed set, :data:`QUANTITIES`): the e-values against the abort bound, the
sequential p-value, the anytime-valid interval for the canary's error-rate ratio, and the
requests and errors per arm; plus ``crackseg_rollout_verdict_info{environment,verdict,code}``
= 1. Read from the rollout records in the store (the record of the newest rollout that
carries evidence, per environment), at most every :data:`REFRESH_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crackseg.utils.deployment.models import DeploymentMetadata

__all__ = ["QUANTITIES", "REFRESH_SECONDS", "RolloutEvidenceCollector"]

REFRESH_SECONDS = 5.0
# quantity label -> path into the record's evidence (extra["evidence"])
QUANTITIES: dict[str, tuple[str, ...]] = {
    "e_errors": ("evidence", "e_values", "errors"),
    "e_latency": ("evidence", "e_values", "latency"),
    "e_errors_not_worse": ("evidence", "e_values", "errors_not_worse"),
    "e_errors_below_limit": ("evidence", "e_values", "errors_below_limit"),
    "p_value": ("evidence", "p_value"),
    "error_ratio_low": ("evidence", "error_ratio", "low"),
    "error_ratio_high": ("evidence", "error_ratio", "high"),
    "canary_requests": ("evidence", "canary", "requests"),
    "canary_errors": ("evidence", "canary", "errors"),
    "stable_requests": ("evidence", "stable", "requests"),
    "stable_errors": ("evidence", "stable", "errors"),
    "needed_requests": ("evidence", "needed_requests"),
}


def _get(d: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    if isinstance(d, bool) or not isinstance(d, int | float):
        return None
    return float(d)


class RolloutEvidenceCollector(Collector):
    """The gauges over ``records()`` (the store's rollout records, oldest first)."""

    def __init__(self, records: Callable[[], list[DeploymentMetadata]]) -> None:
        self._records = records
        self._lock = threading.Lock()
        self._at = -REFRESH_SECONDS
        self._latest: dict[str, dict[str, Any]] = {}

    def latest(self) -> dict[str, dict[str, Any]]:
        """environment -> the evidence of its newest judged rollout (cached)."""
        with self._lock:
            if time.monotonic() - self._at >= REFRESH_SECONDS:
                latest: dict[str, dict[str, Any]] = {}
                for meta in self._records():
                    ev = meta.extra.get("evidence")
                    if isinstance(ev, dict):
                        latest[meta.target_environment] = ev
                self._latest, self._at = latest, time.monotonic()
            return self._latest

    def collect(self) -> Iterator[Metric]:
        latest = self.latest()
        gauge = GaugeMetricFamily(
            "crackseg_rollout_evidence",
            "Evidence of the latest judged rollout per environment (e-values, p-value, "
            "error-rate ratio interval, requests and errors per arm)",
            labels=["environment", "quantity"],
        )
        info = GaugeMetricFamily(
            "crackseg_rollout_verdict_info",
            "The latest judged rollout's verdict per environment",
            labels=["environment", "verdict", "code"],
        )
        for env, ev in sorted(latest.items()):
            for quantity, path in QUANTITIES.items():
                value = _get(ev, path)
                if value is not None:
                    gauge.add_metric([env, quantity], value)
            info.add_metric([env, str(ev.get("verdict", "")), str(ev.get("code", ""))], 1.0)
        yield gauge
        yield info
