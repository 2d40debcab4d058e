"""Memory per deployment with a full default history, and export time for 1,000,000 records.

Run: python benchmarks/bench_history.py
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.models import HealthCheckResult, ResourceMetrics


def fill(
    monitor: DeploymentHealthMonitor, deployments: int, per: int, resources: bool = True
) -> None:
    t = time.time() - per
    for d in range(deployments):
        dep = f"d{d}"
        monitor.add_deployment_monitoring(dep, f"http://127.0.0.1:9/{d}", process_name="svc")
        for i in range(per):
            monitor.store.add_health(
                dep,
                HealthCheckResult(True, "healthy", 1.5 + i % 7, t + i, None, {"http_status": 200}),
            )
            if resources:
                monitor.store.add_resource(
                    dep, ResourceMetrics(12.5, 256.0, 40.1, 0.8, t + i, "svc", 1, tuple([1234]))
                )


def _timed(fn: Callable[[], object], runs: int = 3) -> str:
    """Median (range) of ``runs`` timings of ``fn``, in seconds."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return f"{statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f})"


def main() -> None:
    per = DeploymentHealthMonitor().store.max_history  # type: ignore[attr-defined]
    gc.collect()
    tracemalloc.start()
    m = DeploymentHealthMonitor()
    fill(m, 100, per)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_dep_kib = used / 100 / 1024

    big = DeploymentHealthMonitor()
    fill(big, 1000, per, resources=False)  # 1,000 deployments x 1,000 health results
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export.json"
        ours = _timed(lambda: big.export_monitoring_data(out))
        size = out.stat().st_size / 2**20
        # Reference in the same run: the stdlib json module on the same records.
        rows = [r.to_dict() for r in big.get_health_history("d0")] * 1000
        stdlib = _timed(lambda: json.dumps(rows))
        fill(big, 1000, per)  # and as many resource samples beside them
        both = _timed(lambda: big.export_monitoring_data(out))
        size_both = out.stat().st_size / 2**20
    print("## History memory and export (bench_history.py)\n")
    print(
        "Command: `python benchmarks/bench_history.py`. `DeploymentHealthMonitor()` defaults "
        "(MemoryStore, 1,000 rows per deployment, kept as compact columns); memory by "
        "tracemalloc, monitor entries included; export times median (range) of 3 runs. "
        "Before the columns (one object per result): 217-263 KiB per deployment.\n"
    )
    print("| figure | value | reference / target |")
    print("|---|---|---|")
    print(
        f"| memory per deployment, full default history ({per} health results + {per} resource "
        f"samples, MemoryStore) | {per_dep_kib:.0f} KiB | 10,000 deployments: "
        f"{per_dep_kib * 10_000 / 1024:.0f} MiB; target <= 40 KiB |"
    )
    print(
        f"| export of 1,000,000 health records (1,000 deployments, atomic write included) | "
        f"{ours} ({size:.0f} MiB JSON) | target < 3 s; stdlib `json.dumps` of the same "
        f"records, already as dicts, no file: {stdlib} |"
    )
    print(
        f"| export of 1,000,000 health + 1,000,000 resource records | {both} "
        f"({size_both:.0f} MiB JSON) | |"
    )


if __name__ == "__main__":
    main()
