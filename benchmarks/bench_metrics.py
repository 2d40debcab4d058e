"""/metrics exposition at 10,000 deployments: each format and encoding a scrape may ask for.

The writer alone (no HTTP, no check engine): a registry over 10,000 deployments' statuses,
each with a response-time histogram and uptime, labelled with ``monitor_instance`` as the
service labels it; written as the text format and as OpenMetrics by the fast writer, each
plain and gzip-encoded (:func:`negotiate`, as a request with those headers gets it), and by
prometheus_client's own OpenMetrics writer for reference. Median of 5 (the reference: 1).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.openmetrics import exposition as om

from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.service.exposition import GZIP_LEVEL, negotiate
from crackseg.utils.deployment.service.metrics import build_registry

DEPLOYMENTS = 10_000
RUNS = 5
TEXT = "text/plain;version=0.0.4"
OPENMETRICS = "application/openmetrics-text;version=1.0.0"


class _Monitor:
    """The statuses a monitor of DEPLOYMENTS would report (a fifth of them failing)."""

    monitoring_active = True
    # An empty store: the rollout-evidence families read its records (none here).
    store = MemoryStore()
    dispatcher = None

    def __init__(self) -> None:
        self.statuses = {
            f"svc-{i:05d}": {
                "health_status": "unhealthy" if i % 5 == 0 else "healthy",
                "response_time_ms": 12.5 + i % 7,
                "last_check": 1.7e9 + i * 0.001,
                "error_rate_percent": 20.0 if i % 5 == 0 else 0.0,
                "consecutive_failures": 3 if i % 5 == 0 else 0,
                "total_checks": 100,
                "busy_checks": 0,
                "active_alerts": [],
                "health_check_url": f"http://10.0.{i // 250}.{i % 250}:8080/health",
            }
            for i in range(DEPLOYMENTS)
        }
        self.listeners: list[Callable[[str, HealthCheckResult], None]] = []

    @property
    def monitored_deployments(self) -> dict[str, dict[str, Any]]:
        return self.statuses

    def get_all_deployment_statuses(self) -> dict[str, dict[str, Any]]:
        return self.statuses

    def engine_stats(self) -> dict[str, Any]:
        return {"running": True, "checks_started": 10**6, "lateness_sum_s": 900.0,
                "lateness_p50_ms": 1.0, "lateness_p99_ms": 4.0}  # fmt: skip

    def add_result_listener(self, fn: Callable[[str, HealthCheckResult], None]) -> None:
        self.listeners.append(fn)


class _Uptime:
    def uptime_many(self, ids: list[str]) -> dict[str, list[float | None]]:
        return {"24h": [99.5] * len(ids), "7d": [99.9] * len(ids)}

    def observe(self, *_: object) -> None: ...

    def forget(self, *_: object) -> None: ...


def _time(fn: Callable[[], bytes], runs: int) -> tuple[float, int]:
    took, size = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        size = len(fn())
        took.append(time.perf_counter() - t0)
    return statistics.median(took) * 1000, size


def main() -> None:
    monitor = _Monitor()
    registry, _ = build_registry(monitor, _Uptime(), monitor_instance="monitor-1:8080")  # type: ignore[arg-type]
    for dep in monitor.statuses:
        for listener in monitor.listeners:
            listener(dep, HealthCheckResult(True, "healthy", 12.0))
    rows = []
    for label, accept, encoding in (
        ("text format", TEXT, None),
        ("text format, gzip", TEXT, "gzip"),
        ("OpenMetrics", OPENMETRICS, None),
        ("OpenMetrics, gzip (what Prometheus asks for)", OPENMETRICS, "gzip"),
    ):
        ms, size = _time(lambda a=accept, e=encoding: negotiate(registry, a, e)[0], RUNS)
        rows.append(f"| {label} | {ms:.0f} ms | {size / 2**20:.1f} MiB |")
    ms, size = _time(lambda: bytes(om.generate_latest(registry)), 1)
    rows.append(f"| OpenMetrics by prometheus_client's writer (reference) | {ms:.0f} ms | "
                f"{size / 2**20:.1f} MiB |")  # fmt: skip
    lines = negotiate(registry, TEXT, None)[0].splitlines()
    samples = sum(1 for line in lines if not line.startswith(b"#"))
    print("## /metrics exposition (bench_metrics.py)\n")
    print(
        f"Command: `python benchmarks/bench_metrics.py` — {DEPLOYMENTS:,} deployments "
        f"({samples:,} samples, every one labelled `monitor_instance`), the writer alone "
        f"(no HTTP), median of {RUNS}; gzip at level {GZIP_LEVEL}.\n"
    )
    print("| Format | Time per scrape | Body |\n|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
