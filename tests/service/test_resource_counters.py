"""A deployment's CPU-seconds counter, read from real processes, never falls: a worker that
exits keeps what it used, a pid reused by a new process counts from zero, a forgotten
deployment starts again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from crackseg.utils.deployment.service.resource_counters import (
    ProcessCpuSeconds,
    host_network_bytes,
)
from tests.support.wait import wait_until

# Burns CPU until killed.
BUSY = "import time\nwhile True:\n    sum(range(10000))\n"


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def _used(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def test_cpu_seconds_sum_the_workers_and_keep_an_exited_ones_share(
    workers: list[subprocess.Popen[bytes]],
) -> None:
    counter = ProcessCpuSeconds()
    pids = [p.pid for p in workers]
    assert counter.seconds("api", []) is None  # nothing read yet: no value, not 0
    wait_until(lambda: all(_used(pid) >= 0.2 for pid in pids), 30, "both workers busy")
    second_before = _used(pids[1])
    before = counter.seconds("api", pids)
    assert before is not None and before >= 0.4
    second_last = _used(pids[1])
    workers[1].kill()
    workers[1].wait(10)
    # The monitor still lists the dead pid until its next sample, then drops it.
    still = counter.seconds("api", pids)
    first_before = _used(pids[0])
    after = counter.seconds("api", pids[:1])
    first_after = _used(pids[0])
    assert still is not None and after is not None
    assert before <= still <= after
    # What the exited worker had used when last read stays in the counter.
    kept_at_least, kept_at_most = after - first_after, after - first_before
    # (1e-6: the sums of clock ticks carry float rounding.)
    assert kept_at_most >= second_before - 1e-6 and kept_at_least <= second_last + 1e-6
    # Another deployment's counter is its own; a forgotten one starts again.
    assert counter.seconds("other", pids[:1]) == pytest.approx(_used(pids[0]), abs=0.05)
    counter.prune({"other": {}})
    assert counter.seconds("api", pids[:1]) == pytest.approx(_used(pids[0]), abs=0.05)


def test_host_network_bytes_are_the_kernels_counters() -> None:
    io = psutil.net_io_counters()
    got = host_network_bytes()
    assert got is not None and got[0] >= io.bytes_recv and got[1] >= io.bytes_sent
