"""First readings are meaningful, a process's CPU stays within its cores, and the monitor never
measures itself as one of its deployments."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from crackseg.utils.deployment.errors import ProcessNotFoundError
from crackseg.utils.deployment.monitoring.resources.psutil_monitor import (
    FIRST_WINDOW,
    DefaultResourceMonitor,
)
from tests.support.procs import named_process

CLI = Path(sys.executable).with_name("crackseg-monitor")

# Busy on every core until its average since start is above one core by a margin larger
# than the start time's uncertainty (psutil knows the boot time to the second), then pinned
# to one core: a first reading (that average) must still not report more than one core.
# The threads hash outside the GIL: spinning on bytecode, three threads shared one core, the
# average never passed one core, and the test skipped on every machine, CI included.
SPIN_PINNED = """
import hashlib, os, sys, threading, time
t0 = time.monotonic()
def spin():
    block = bytes(1 << 20)
    while True:
        hashlib.sha256(block).digest()
for _ in range(3):
    threading.Thread(target=spin, daemon=True).start()
while True:
    time.sleep(0.05)
    used, elapsed = sum(os.times()[:2]), time.monotonic() - t0
    if used > elapsed + 1.2 or elapsed > 10:
        break
for tid in os.listdir("/proc/self/task"):
    os.sched_setaffinity(int(tid), {min(os.sched_getaffinity(0))})
print("ready" if used > elapsed + 1.2 else "busy machine", flush=True)
sys.stdin.readline()
"""


def _loopback(nbytes: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname(), timeout=5)
        peer, _ = srv.accept()
        with c, peer:
            c.sendall(b"\0" * nbytes)
            got = 0
            while got < nbytes:
                got += len(peer.recv(1 << 20))


def test_first_system_reading_measures_a_short_real_window() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        mon = DefaultResourceMonitor()
        _loopback(2 << 20)
        t0 = time.monotonic()
        first = mon.get_system_metrics()
        took = time.monotonic() - t0
    finally:
        stop.set()
        spinner.join()
    later = []  # timed without the spinner, which holds the GIL between psutil's syscalls
    for _ in range(5):
        t0 = time.monotonic()
        mon.get_system_metrics()
        later.append(time.monotonic() - t0)
    # A spinning thread keeps part of the machine busy: a real rate, not the old 0.0 (the
    # floor is low because the machine is shared with whatever else runs).
    assert first.cpu_usage_percent >= 5.0
    assert first.network_io_mbps > 0.0  # 4 MiB over loopback since the counters were primed
    assert took <= FIRST_WINDOW + 0.4  # bounded: at most the rest of a 100 ms window (+ noise)
    # Only the first call may wait: the later ones never sleep a window (median: one call may
    # be descheduled on a shared machine).
    assert sorted(later)[2] < FIRST_WINDOW / 2


def test_a_process_first_cpu_reading_never_exceeds_its_cores(tmp_path: Path) -> None:
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs CPU affinity (Linux) and two cores")
    script = tmp_path / f"crackseg_pinned_{uuid.uuid4().hex[:8]}.py"
    script.write_text(SPIN_PINNED)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            pytest.skip("the machine is too busy to give one process two cores")
        readings = []
        for _ in range(8):  # a fresh monitor each time: every reading is a first one
            mon = DefaultResourceMonitor()
            readings.append(mon.get_process_metrics(script.name).cpu_usage_percent)
            readings.append(mon.get_process_metrics(script.name).cpu_usage_percent)
            time.sleep(0.06)
            readings.append(mon.get_process_metrics(script.name).cpu_usage_percent)
    finally:
        proc.kill()
        proc.wait(10)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()
    # Three spinning threads now pinned to one core: busy, but never above 100 %.
    assert max(readings) <= 100.0
    assert max(readings) >= 50.0


def test_the_monitor_never_matches_its_own_process() -> None:
    name = f"zzqq_{uuid.uuid4().hex[:8]}"
    code = (
        "import sys\n"
        "from crackseg.utils.deployment.monitoring.resources.psutil_monitor import "
        "DefaultResourceMonitor\n"
        "from crackseg.utils.deployment.errors import ProcessNotFoundError\n"
        "try:\n"
        "    m = DefaultResourceMonitor().get_process_metrics(sys.argv[1])\n"
        "except ProcessNotFoundError:\n"
        "    print('not found')\n"
        "else:\n"
        "    print('matched', m.pids)\n"
    )
    # The name is in the asking process's own command line: it still does not count.
    out = subprocess.run(
        [sys.executable, "-c", code, name], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "not found", out.stderr
    cli = subprocess.run(
        [str(CLI), "resources", "--process", name], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 1 and f"process {name!r} is not running" in cli.stderr


def test_a_named_process_reports_the_pids_it_matched() -> None:
    with named_process() as name:
        mon = DefaultResourceMonitor()
        m = mon.get_process_metrics(name)
        assert m.process_count == 1 and os.getpid() not in m.pids
        assert psutil.Process(m.pids[0]).cmdline()[-1] == name
    with pytest.raises(ProcessNotFoundError):
        DefaultResourceMonitor().get_process_metrics(name)
