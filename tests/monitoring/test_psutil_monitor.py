"""DefaultResourceMonitor against real processes, real counters and real loopback traffic."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from crackseg.utils.deployment.errors import ConfigError, ProcessNotFoundError
from crackseg.utils.deployment.monitoring.resources.base import ResourceMonitor
from crackseg.utils.deployment.monitoring.resources.psutil_monitor import (
    MIN_RATE_WINDOW,
    DefaultResourceMonitor,
    process_matches,
)
from tests.support.wait import poll

WORKER = """
import sys, threading
blob = b"x" * ({mb} * 1024 * 1024)  # written, so resident
print("ready", flush=True)
if sys.argv[1] == "wait-busy":
    sys.stdin.readline()
if sys.argv[1] in ("busy", "wait-busy"):
    while True:
        pass
threading.Event().wait()
"""

MASTER = """
import subprocess, sys

workers = [
    subprocess.Popen([sys.executable, sys.argv[1], mode], stdout=subprocess.PIPE, text=True)
    for mode in sys.argv[2:]
]
for w in workers:
    assert w.stdout is not None and w.stdout.readline().strip() == "ready"
print(" ".join(str(w.pid) for w in workers), flush=True)
sys.stdin.read()
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingMonitor(DefaultResourceMonitor):
    """Counts full process-table scans."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.scan_calls = 0

    def find_processes(self, process_name: str) -> list[psutil.Process]:
        self.scan_calls += 1
        return super().find_processes(process_name)


class Procs:
    """Starts scripts with distinctive names, each in its own process group; kills them all."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[str]] = []

    def script(self, prefix: str, body: str) -> Path:
        path = self.tmp / f"{prefix}_{uuid.uuid4().hex[:8]}.py"
        path.write_text(body)
        return path

    def start(self, *argv: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.started.append(p)
        return p

    def worker(self, mode: str, mb: int = 1) -> tuple[subprocess.Popen[str], str]:
        path = self.script("crackseg_idle" if mode == "idle" else "crackseg_busy", WORKER)
        path.write_text(WORKER.format(mb=mb))
        p = self.start(str(path), mode)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        return p, path.name

    def master(self, *modes: str) -> tuple[subprocess.Popen[str], str, list[int]]:
        worker = self.script("crackseg_wrk", WORKER.format(mb=30))
        master = self.script("crackseg_master", MASTER)
        p = self.start(str(master), str(worker), *modes)
        assert p.stdout is not None
        pids = [int(x) for x in p.stdout.readline().split()]
        assert len(pids) == len(modes)
        return p, master.name, pids

    def kill_all(self) -> None:
        for p in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            for f in (p.stdin, p.stdout):
                if f is not None:
                    f.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    ps = Procs(tmp_path)
    try:
        yield ps
    finally:
        ps.kill_all()


def test_is_a_resource_monitor() -> None:
    assert isinstance(DefaultResourceMonitor(), ResourceMonitor)


@pytest.mark.parametrize(
    ("want", "name", "cmdline", "expected"),
    [
        ("nginx", "nginx", ["nginx: worker process"], True),
        ("gunicorn", "python3", ["/usr/bin/python3", "/srv/venv/bin/gunicorn", "app:app"], True),
        ("gunicorn", "gunicorn", [], True),
        ("uvicorn", "python3", ["python3", "-m", "uvicorn", "app:app"], True),
        ("uvicorn", "python3", ["python3", "-muvicorn.main"], True),
        ("app.py", "python3.11", ["/usr/bin/python3.11", "-u", "/srv/app.py"], True),
        ("myserver", "myserver-bin", ["/opt/bin/myserver", "--port", "1"], True),
        ("/usr/sbin/nginx", "nginx", ["/usr/sbin/nginx", "-g", "daemon off;"], True),
        ("/usr/sbin/nginx", "nginx", ["/opt/nginx/sbin/nginx"], False),
        ("app.py", "tail", ["tail", "-f", "/srv/app.py"], False),
        ("uvicorn", "python3", ["python3", "-m", "pytest", "uvicorn"], False),
        ("python", "python3", ["/usr/bin/python3", "x.py"], False),
        ("x", None, None, False),
    ],
)
def test_matching_rule(
    want: str, name: str | None, cmdline: list[str] | None, expected: bool
) -> None:
    assert process_matches(want, name, cmdline) is expected


def test_system_metrics_values(tmp_path: Path) -> None:
    mon = DefaultResourceMonitor(disk_path=str(tmp_path))
    m = mon.get_system_metrics()
    assert 0.0 <= m.cpu_usage_percent <= 100.0
    assert m.network_io_mbps >= 0.0  # primed at creation: a rate over the first window
    assert m.disk_usage_percent == pytest.approx(psutil.disk_usage(str(tmp_path)).percent, abs=1)
    used = psutil.virtual_memory().used / 2**20
    assert m.memory_usage_mb == pytest.approx(used, rel=0.2)
    assert m.process_name is None and m.pids == ()


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="disk_path"):
        DefaultResourceMonitor(disk_path="/no/such/dir/anywhere")
    with pytest.raises(ConfigError, match="rescan_interval"):
        DefaultResourceMonitor(rescan_interval=-1)


def test_calls_never_sleep(procs: Procs) -> None:
    _, name = procs.worker("idle")
    mon = DefaultResourceMonitor()
    mon.get_process_metrics(name)  # the scan happens here
    sys_times, proc_times = [], []
    for _ in range(7):
        t = time.perf_counter()
        mon.get_system_metrics()
        sys_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        mon.get_process_metrics(name)
        proc_times.append(time.perf_counter() - t)
    # Generous: real calls take ~0.1-0.3 ms; a sleep-based cpu_percent(interval=1) takes 1 s.
    assert statistics.median(sys_times) < 0.05
    assert statistics.median(proc_times) < 0.05
    assert max(sys_times + proc_times) < 0.5


def test_system_cpu_is_a_rate_between_calls() -> None:
    mon = DefaultResourceMonitor()
    mon.get_system_metrics()
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    t = threading.Thread(target=spin)
    t.start()
    try:
        # One spinning thread on this machine is at least ~1/ncpu of it busy.
        floor = 100.0 / (psutil.cpu_count() or 1) * 0.5
        assert poll(lambda: mon.get_system_metrics().cpu_usage_percent >= floor, 15, 0.1)
    finally:
        stop.set()
        t.join()


def test_cpu_rises_when_a_process_gets_busy(procs: Procs) -> None:
    proc, name = procs.worker("wait-busy")
    _, idle = procs.worker("idle")
    mon = DefaultResourceMonitor()
    first_idle = mon.get_process_metrics(idle)
    assert first_idle.process_name == idle and first_idle.process_count == 1
    mon.get_process_metrics(name)
    # Waiting on stdin: once a sample covers a real interval, it reads ~0 %.
    assert poll(lambda: mon.get_process_metrics(name).cpu_usage_percent < 5.0, 15, 0.1)
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert poll(lambda: mon.get_process_metrics(name).cpu_usage_percent > 25.0, 15, 0.1)
    # The idle baseline was taken before the busy wait, so this is a real delta: ~0 %.
    assert mon.get_process_metrics(idle).cpu_usage_percent < 10.0


def test_master_and_workers_are_summed(procs: Procs) -> None:
    master, name, worker_pids = procs.master("busy", "idle")
    mon = DefaultResourceMonitor()
    m = mon.get_process_metrics(name)
    assert set(m.pids) == {master.pid, *worker_pids}
    assert m.process_count == 3
    rss = sum(psutil.Process(p).memory_info().rss for p in m.pids) / 2**20
    assert m.memory_usage_mb == pytest.approx(rss, rel=0.1)
    assert m.memory_usage_mb > 60  # two 30 MiB workers: the children are counted
    # The master idles; only its busy worker can push the sum up.
    assert poll(lambda: mon.get_process_metrics(name).cpu_usage_percent > 25.0, 15, 0.1)


def test_missing_process_raises_not_zero(procs: Procs) -> None:
    p, name = procs.worker("idle")
    mon = DefaultResourceMonitor(rescan_interval=0)
    assert mon.get_process_metrics(name).pids == (p.pid,)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    with pytest.raises(ProcessNotFoundError) as exc:
        mon.get_process_metrics(name)
    assert exc.value.process_name == name
    with pytest.raises(ProcessNotFoundError):
        mon.get_process_metrics("crackseg_never_started_" + uuid.uuid4().hex)


def test_pid_cache_avoids_rescans(procs: Procs) -> None:
    _master, name, worker_pids = procs.master("idle", "idle")
    mon = CountingMonitor(rescan_interval=0)
    for _ in range(20):
        assert mon.get_process_metrics(name).process_count == 3
    assert mon.scan_calls == 1
    # A worker exits: the next call notices, rescans once, and reports the survivors.
    os.kill(worker_pids[0], signal.SIGKILL)
    assert poll(lambda: mon.get_process_metrics(name).process_count == 2, 15, 0.1)
    calls = mon.scan_calls
    assert calls >= 2
    for _ in range(10):
        assert worker_pids[0] not in mon.get_process_metrics(name).pids
    assert mon.scan_calls == calls


def test_missing_name_rescans_at_most_every_rescan_interval() -> None:
    clock = FakeClock()
    mon = CountingMonitor(clock=clock, rescan_interval=5.0)
    name = "crackseg_never_started_" + uuid.uuid4().hex
    for _ in range(5):
        with pytest.raises(ProcessNotFoundError):
            mon.get_process_metrics(name)
    assert mon.scan_calls == 1
    clock.now += 5.0
    with pytest.raises(ProcessNotFoundError):
        mon.get_process_metrics(name)
    assert mon.scan_calls == 2


def test_refresh_interval_picks_up_new_workers(procs: Procs) -> None:
    clock = FakeClock()
    _, name = procs.worker("idle")
    mon = CountingMonitor(clock=clock, refresh_interval=30.0)
    mon.get_process_metrics(name)
    clock.now += 29.0
    mon.get_process_metrics(name)
    assert mon.scan_calls == 1
    clock.now += 1.0
    mon.get_process_metrics(name)
    assert mon.scan_calls == 2


def _net_total() -> int:
    io = psutil.net_io_counters()
    return int(io.bytes_sent + io.bytes_recv)


def _loopback_traffic(nbytes: int) -> None:
    """Send ``nbytes`` over TCP on 127.0.0.1 and wait until all of it was received."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(10)
        got = 0

        def sink() -> None:
            nonlocal got
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                while chunk := conn.recv(1 << 16):
                    got += len(chunk)

        t = threading.Thread(target=sink)
        t.start()
        with socket.create_connection(srv.getsockname(), timeout=10) as c:
            c.sendall(b"\0" * nbytes)
        t.join(timeout=20)
        assert got == nbytes


def test_network_mbps_is_a_rate_between_samples() -> None:
    clock = FakeClock()
    mon = DefaultResourceMonitor(clock=clock)
    nbytes = 8 * 1024 * 1024
    outer_start = _net_total()
    assert mon.get_system_metrics().network_io_mbps == 0.0
    _loopback_traffic(nbytes)
    clock.now += 2.0
    rate = mon.get_system_metrics().network_io_mbps
    outer_delta = _net_total() - outer_start
    seen_bytes = rate * 2.0 * 1e6 / 8
    # Loopback counts each byte as sent and as received.
    assert seen_bytes >= 2 * nbytes * 0.99
    assert seen_bytes <= outer_delta * 1.01  # a rate over this window, not a total since boot


def test_network_counter_reset_reports_zero_not_negative() -> None:
    clock = FakeClock()
    counters = iter([10_000_000, 5_000, 6_000 + 125_000])

    class Resetting(DefaultResourceMonitor):
        def _net_bytes(self) -> int:
            return next(counters)

    mon = Resetting(clock=clock)
    mon.get_system_metrics()
    clock.now += 1.0
    assert mon.get_system_metrics().network_io_mbps == 0.0  # counters went backwards
    clock.now += 1.0
    assert mon.get_system_metrics().network_io_mbps == pytest.approx(1.008)


def test_samples_too_close_repeat_the_previous_rate() -> None:
    clock = FakeClock()
    counters = iter([0, 1_000_000, 999_999_999])

    class Counting(DefaultResourceMonitor):
        def _net_bytes(self) -> int:
            return next(counters)

    mon = Counting(clock=clock)
    mon.get_system_metrics()
    clock.now += 1.0
    assert mon.get_system_metrics().network_io_mbps == pytest.approx(8.0)
    clock.now += MIN_RATE_WINDOW / 2
    assert mon.get_system_metrics().network_io_mbps == pytest.approx(8.0)


def test_thread_safe_under_concurrent_calls(procs: Procs) -> None:
    _, name = procs.worker("idle")
    mon = CountingMonitor()
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(50):
                assert mon.get_process_metrics(name).process_count == 1
                mon.get_system_metrics()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert mon.scan_calls == 1
