"""Cumulative resource counters for ``/metrics``, read from psutil at scrape time.

The monitor's resource samples are rates over the interval between two samples (CPU %,
network Mbps). Prometheus wants the counters themselves, so ``rate()`` works over any
window and no sample is lost between scrapes: CPU seconds of a deployment's processes,
bytes received and sent by the machine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import psutil

__all__ = ["ProcessCpuSeconds", "host_memory_total_bytes", "host_network_bytes"]


def host_network_bytes() -> tuple[float, float] | None:
    """Bytes received and sent on all interfaces since boot, or None when unknown."""
    io = psutil.net_io_counters()
    return (float(io.bytes_recv), float(io.bytes_sent)) if io is not None else None


def host_memory_total_bytes() -> float:
    """The machine's physical memory in bytes."""
    return float(psutil.virtual_memory().total)


class ProcessCpuSeconds:
    """CPU seconds (user + system) used by each deployment's processes, never decreasing.

    A deployment's value is what its live processes used since they started plus what its
    processes that exited had used when last seen: a worker that exits does not make the
    counter fall (which Prometheus would read as a reset and a burst). Thread-safe.
    """

    def __init__(self) -> None:
        # deployment id -> (pid -> (create time, last CPU seconds), seconds of exited pids)
        self._seen: dict[str, tuple[dict[int, tuple[float, float]], float]] = {}
        self._lock = threading.Lock()

    def prune(self, live: Mapping[str, Any]) -> None:
        """Forget deployments no longer in ``live``."""
        with self._lock:
            for gone in [d for d in self._seen if d not in live]:
                del self._seen[gone]

    def seconds(self, deployment_id: str, pids: Iterable[int]) -> float | None:
        """The counter for ``deployment_id`` whose processes are now ``pids`` (None while
        none was ever read)."""
        listed = tuple(pids)
        readings: dict[int, tuple[float, float]] = {}
        for pid in listed:
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    t = proc.cpu_times()
                    readings[pid] = (proc.create_time(), t.user + t.system)
            except (psutil.Error, ValueError):
                continue  # exited, or not ours to read: its last reading is kept below
        with self._lock:
            known, retired = self._seen.get(deployment_id, ({}, 0.0))
            current: dict[int, tuple[float, float]] = {}
            for pid, (born, used) in known.items():
                now = readings.get(pid)
                if now is None and pid in listed:
                    current[pid] = (born, used)  # still listed, unreadable this time
                elif now is None or now[0] != born or now[1] < used:
                    retired += used  # exited, or its pid reused by a new process
            current.update(readings)
            if not current and not known and retired == 0.0:
                return None
            self._seen[deployment_id] = (current, retired)
            return retired + sum(used for _, used in current.values())
