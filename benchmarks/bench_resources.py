"""Cost of resource sampling: DefaultResourceMonitor calls against a full process-table scan.

Prints one Markdown section. Run: ``.venv/bin/python benchmarks/bench_resources.py``.
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

from crackseg.utils.deployment.monitoring.resources.psutil_monitor import DefaultResourceMonitor

CHILD = """
import subprocess, sys, threading
if sys.argv[1] == "master":
    ws = [subprocess.Popen([sys.executable, __file__, "worker"]) for _ in range(2)]
print("ready", flush=True)
sys.stdin.read()
"""


def _us(fn: Callable[[], object], rounds: int = 7, number: int = 200) -> float:
    """Median over ``rounds`` of the mean µs per call over ``number`` calls."""
    fn()
    runs = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - t) / number * 1e6)
    return statistics.median(runs)


def _raw_system() -> None:
    psutil.cpu_percent(interval=None)
    psutil.virtual_memory()
    psutil.disk_usage("/")
    psutil.net_io_counters()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / f"crackseg_bench_{uuid.uuid4().hex[:8]}.py"
        script.write_text(CHILD)
        single = subprocess.Popen(
            [sys.executable, str(script), "single"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        master = subprocess.Popen(
            [sys.executable, str(script), "master"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            for p in (single, master):
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            # A clock a second ahead at each call, so every call computes fresh rates instead
            # of repeating the previous one (calls closer than MIN_RATE_WINDOW do that).
            ticks = itertools.count(start=1.0)
            mon = DefaultResourceMonitor(clock=lambda: float(next(ticks)), refresh_interval=None)
            name = script.name
            # The single process and the master match by name; the master's workers too.
            group = mon.get_process_metrics(name)
            n_table = len(psutil.pids())
            system_us = _us(mon.get_system_metrics)
            raw_us = _us(_raw_system)
            cached_us = _us(lambda: mon.get_process_metrics(name))
            scan_us = _us(lambda: mon.find_processes(name), rounds=5, number=10)
            scans_before = mon.scans
            for _ in range(1000):
                mon.get_process_metrics(name)
            rescans = mon.scans - scans_before
        finally:
            for p in (single, master):
                os.killpg(p.pid, 9)
                p.wait(timeout=10)
                assert p.stdin is not None and p.stdout is not None
                p.stdin.close()
                p.stdout.close()

    per_proc = cached_us / (group.process_count or 1)
    print("## Resource metrics (DefaultResourceMonitor)\n")
    print("Command: `.venv/bin/python benchmarks/bench_resources.py`  ")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, psutil {psutil.__version__}; "
        f"{n_table} processes in the table.\n"
    )
    print("| call | µs per call | reference (same run) |")
    print("|---|---|---|")
    print(
        f"| `get_system_metrics()` | {system_us:,.0f} | raw psutil cpu_percent + virtual_memory "
        f"+ disk_usage + net_io_counters: {raw_us:,.0f} |"
    )
    print(
        f"| `get_process_metrics(name)`, cached, {group.process_count} processes "
        f"(one alone, a master and its 2 workers) | {cached_us:,.0f} ({per_proc:,.0f} per process) | "
        f"full process-table scan by name: {scan_us:,.0f} |"
    )
    print("\nEach timed call computes fresh rates (a clock advanced 1 s per call).  ")
    print(
        f"Rescans of the process table in 1,000 cached calls: {rescans}. "
        f"A cached call costs {scan_us / cached_us:,.1f}x less than scanning the table."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
