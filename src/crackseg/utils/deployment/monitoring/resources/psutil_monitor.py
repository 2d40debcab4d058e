"""psutil implementation of :class:`~.base.ResourceMonitor`.

CPU % and network Mbps are rates over the interval since the previous sample, computed from
counter deltas on a monotonic clock (never a total since boot). The counters are primed when
the monitor is created, so the first reading is a real rate too; only a first system sample
taken less than :data:`FIRST_WINDOW` (100 ms) after creation waits out the rest of that
window, once. Every other call returns at once. Process lookups cache the matching PIDs per
name so the process table (thousands of µs to scan) is read only when the cache goes stale.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

from crackseg.utils.deployment.errors import ConfigError, ProcessNotFoundError, require_positive
from crackseg.utils.deployment.models import ResourceMetrics
from crackseg.utils.deployment.monitoring.resources.base import ResourceMonitor

__all__ = ["FIRST_WINDOW", "MIN_RATE_WINDOW", "DefaultResourceMonitor", "process_matches"]

_MB = 1024 * 1024
# Samples closer together than this reuse the previous rate instead of dividing a few bytes
# (or a few CPU ticks) by microseconds, which would report wild spikes.
MIN_RATE_WINDOW = 0.05
#: The shortest window a first system reading measures over: a first call sooner than this
#: after the monitor was created sleeps the remainder (at most this long, once).
FIRST_WINDOW = 0.1
_INTERPRETERS = ("python", "pypy", "node", "ruby", "perl", "php", "java", "bun", "deno")
_PSUTIL_ERRORS = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def _is_interpreter(argv0: str) -> bool:
    base = os.path.basename(argv0).lower()
    return base.startswith(_INTERPRETERS)


def process_matches(process_name: str, name: str | None, cmdline: list[str] | None) -> bool:
    """Whether a process (its ``name`` and ``cmdline``) matches ``process_name``.

    A process matches when any of these holds:

    1. its name (``/proc/PID/comm``, as psutil reports it) equals ``process_name``;
    2. the basename of ``argv[0]`` equals it (``/usr/bin/gunicorn`` matches ``gunicorn``),
       or ``argv[0]`` itself does when the name is a path (``/usr/sbin/nginx``);
    3. ``argv[0]`` is an interpreter (python*, pypy*, node, ruby, perl, php, java, bun, deno)
       and either some later argument's basename equals it (``python3 /srv/app.py`` matches
       ``app.py``; ``python /usr/bin/gunicorn app:app`` matches ``gunicorn``) or the
       process runs ``-m MODULE`` where MODULE or its top-level package equals it
       (``python -m uvicorn app:app`` matches ``uvicorn``).

    Arguments of non-interpreters are ignored, so ``tail -f app.py`` does not match ``app.py``.
    :meth:`DefaultResourceMonitor.find_processes` applies this rule to every process but the
    one asking (the monitor itself never matches, even when the name is in its own command
    line, as with ``crackseg-monitor resources --process NAME``).

    >>> process_matches("uvicorn", "python3", ["python3", "-m", "uvicorn", "app:app"])
    True
    """
    if name == process_name:
        return True
    if not cmdline:
        return False
    if os.path.basename(cmdline[0]) == process_name or cmdline[0] == process_name:
        return True
    if not _is_interpreter(cmdline[0]):
        return False
    args = cmdline[1:]
    for i, arg in enumerate(args):
        if arg == "-m" and i + 1 < len(args):
            module = args[i + 1]
            return module == process_name or module.split(".", 1)[0] == process_name
        if arg.startswith("-m") and len(arg) > 2:
            module = arg[2:]
            return module == process_name or module.split(".", 1)[0] == process_name
        if os.path.basename(arg) == process_name:
            return True
    return False


def _ceiling(proc: psutil.Process) -> float:
    """100 % per core the process may run on (its CPU affinity, else every core)."""
    try:
        cores = len(proc.cpu_affinity() or ())
    except (AttributeError, *_PSUTIL_ERRORS, OSError):
        cores = 0
    return 100.0 * (cores or psutil.cpu_count() or 1)


@dataclass
class _Tracked:
    """Processes cached for one name, with the CPU-time baselines their deltas need."""

    procs: dict[int, psutil.Process] = field(default_factory=dict)
    # pid -> (CPU seconds, clock at that reading, rate last computed for the pid)
    cpu: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    # pid -> the most CPU % its cores allow (100 per core it may run on)
    ceiling: dict[int, float] = field(default_factory=dict)
    scanned_at: float = 0.0


class DefaultResourceMonitor(ResourceMonitor):
    """Resource use of the machine and of named processes, from psutil.

    ``disk_path`` is the file system whose use is reported; ``clock`` (monotonic seconds,
    injectable for tests) times the rate intervals; ``rescan_interval`` is the minimum number
    of seconds between process-table scans for a name that matched nothing, so asking for a
    missing process every check costs no scan; ``refresh_interval`` (or None) rescans a name
    whose cached processes are all still alive, to pick up workers spawned since.

    Rates and first samples:

    * ``cpu_usage_percent`` (system) is the share of all CPUs busy since the previous
      :meth:`get_system_metrics` call, 0-100. The monitor primes its baseline on
      construction, so the first call reports the use since the monitor was created; a
      first call less than :data:`FIRST_WINDOW` (100 ms) after creation sleeps the rest of
      that window first, so it never divides a few ticks by microseconds. Independent of
      other callers of ``psutil.cpu_percent``.
    * ``network_io_mbps`` is megabits per second sent plus received on all interfaces
      (loopback included) since the previous sample (system or process), primed on
      construction like the CPU. A counter that goes backwards (NIC reset, wrap) reports
      0.0, never a negative rate.
    * Samples taken less than :data:`MIN_RATE_WINDOW` apart repeat the previous rate.
    * ``memory_usage_mb`` is used memory (system) or summed resident set size (process) in
      MiB (2**20 bytes).

    All methods are thread-safe.

    >>> m = DefaultResourceMonitor()
    >>> 0.0 <= m.get_system_metrics().disk_usage_percent <= 100.0
    True
    """

    def __init__(
        self,
        disk_path: str = "/",
        clock: Callable[[], float] = time.monotonic,
        rescan_interval: float = 5.0,
        refresh_interval: float | None = 60.0,
    ) -> None:
        require_positive("rescan_interval", rescan_interval, allow_zero=True)
        if refresh_interval is not None:
            require_positive("refresh_interval", refresh_interval)
        if not os.path.exists(disk_path):
            raise ConfigError("disk_path", f"{disk_path!r} does not exist")
        self.disk_path = disk_path
        self.rescan_interval = float(rescan_interval)
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._tracked: dict[str, _Tracked] = {}
        self._missing_since: dict[str, float] = {}  # name -> clock of the scan that found none
        self.scans = 0
        now = clock()
        self._created = now
        self._first_system = True
        self._cpu_base: tuple[float, float] = self._cpu_busy_total()
        self._cpu_at = now
        self._cpu_last = 0.0
        self._net_base: int | None = self._net_bytes()
        self._net_at = now
        self._net_last = 0.0

    # -- system ---------------------------------------------------------------------------

    @staticmethod
    def _cpu_busy_total() -> tuple[float, float]:
        t = psutil.cpu_times()
        # Same accounting as psutil.cpu_percent: guest time is already counted in user time,
        # and iowait is idle time.
        total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        idle = t.idle + getattr(t, "iowait", 0.0)
        return total - idle, total

    def _system_cpu(self, now: float) -> float:
        if now - self._cpu_at < MIN_RATE_WINDOW:
            return self._cpu_last
        busy, total = self._cpu_busy_total()
        d_busy, d_total = busy - self._cpu_base[0], total - self._cpu_base[1]
        self._cpu_base, self._cpu_at = (busy, total), now
        if d_total <= 0:
            return self._cpu_last
        self._cpu_last = round(min(100.0, max(0.0, 100.0 * d_busy / d_total)), 2)
        return self._cpu_last

    def _net_bytes(self) -> int:
        """Bytes sent plus received on all interfaces since boot (overridable for tests)."""
        io = psutil.net_io_counters()
        return int(io.bytes_sent + io.bytes_recv) if io is not None else 0

    def _network_mbps(self, now: float) -> float:
        if self._net_base is not None and now - self._net_at < MIN_RATE_WINDOW:
            return self._net_last
        total = self._net_bytes()
        if self._net_base is None:
            rate = 0.0
        else:
            delta = total - self._net_base
            elapsed = now - self._net_at
            rate = delta * 8 / 1e6 / elapsed if delta > 0 and elapsed > 0 else 0.0
        self._net_base, self._net_at, self._net_last = total, now, rate
        return rate

    def _disk_percent(self) -> float:
        return float(psutil.disk_usage(self.disk_path).percent)

    def get_system_metrics(self) -> ResourceMetrics:
        """CPU % and network Mbps since the previous sample, used memory MiB, disk use %."""
        with self._lock:
            if self._first_system:
                self._first_system = False
                early = FIRST_WINDOW - (self._clock() - self._created)
                if early > 0:
                    time.sleep(min(early, FIRST_WINDOW))
            now = self._clock()
            cpu = self._system_cpu(now)
            net = self._network_mbps(now)
            mem = psutil.virtual_memory().used / _MB
            disk = self._disk_percent()
        return ResourceMetrics(
            cpu_usage_percent=cpu,
            memory_usage_mb=round(mem, 2),
            disk_usage_percent=disk,
            network_io_mbps=round(net, 4),
        )

    # -- processes ------------------------------------------------------------------------

    def find_processes(self, process_name: str) -> list[psutil.Process]:
        """Scan the whole process table: processes matching the name, plus their descendants.

        See :func:`process_matches` for the rule. Descendants are included so a master and
        its workers (gunicorn, uvicorn --workers, multiprocessing pools) are summed, even when
        workers renamed themselves. Costs milliseconds; :meth:`get_process_metrics` calls it
        only when its cache is stale. Override it to change the matching.
        """
        procs: dict[int, psutil.Process] = {}
        children: dict[int, list[int]] = {}
        roots: list[int] = []
        me = os.getpid()
        for p in psutil.process_iter(["name", "cmdline", "ppid"]):
            if p.pid == me:
                continue  # the monitor is never one of the deployments it measures
            info = p.info
            procs[p.pid] = p
            ppid = info.get("ppid")
            if isinstance(ppid, int):
                children.setdefault(ppid, []).append(p.pid)
            name, cmdline = info.get("name"), info.get("cmdline")
            if process_matches(process_name, name, cmdline):
                roots.append(p.pid)
        found: dict[int, psutil.Process] = {}
        stack = list(roots)
        while stack:
            pid = stack.pop()
            if pid in found or pid not in procs:
                continue
            found[pid] = procs[pid]
            stack.extend(children.get(pid, ()))
        return [found[pid] for pid in sorted(found)]

    def _rescan(self, process_name: str, tracked: _Tracked | None, now: float) -> _Tracked:
        self.scans += 1
        fresh = self.find_processes(process_name)
        old = tracked or _Tracked()
        new = _Tracked(scanned_at=now)
        for p in fresh:
            kept = old.procs.get(p.pid)
            # Keep the cached object (and its CPU baseline) when it is the same process.
            if kept is not None and kept == p:
                new.procs[p.pid] = kept
                if p.pid in old.cpu:
                    new.cpu[p.pid] = old.cpu[p.pid]
                if p.pid in old.ceiling:
                    new.ceiling[p.pid] = old.ceiling[p.pid]
            else:
                new.procs[p.pid] = p
        return new

    def _sample(self, tracked: _Tracked, now: float) -> tuple[float, float, list[int], list[int]]:
        """Summed CPU %, summed RSS MiB, live pids and gone pids of the cached processes."""
        cpu_pct = rss = 0.0
        live: list[int] = []
        gone: list[int] = []
        for pid, proc in tracked.procs.items():
            try:
                # is_running() also catches a PID reused by an unrelated process.
                if not proc.is_running():
                    gone.append(pid)
                    continue
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        gone.append(pid)
                        continue
                    ct = proc.cpu_times()
                    mem = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                gone.append(pid)
                continue
            except psutil.AccessDenied:
                live.append(pid)  # running, but its counters are not ours to read
                continue
            live.append(pid)
            rss += mem
            used = ct.user + ct.system
            base = tracked.cpu.get(pid)
            if base is None:
                # First sight of this process: its average since it started, not 0 %.
                tracked.ceiling[pid] = _ceiling(proc)
                age = time.time() - proc.create_time()
                rate = 100.0 * used / age if age > 0 else 0.0
                rate = min(rate, tracked.ceiling[pid])
                tracked.cpu[pid] = (used, now, rate)
            elif now - base[1] >= MIN_RATE_WINDOW:
                rate = 100.0 * max(0.0, used - base[0]) / (now - base[1])
                rate = min(rate, tracked.ceiling.get(pid, rate))
                tracked.cpu[pid] = (used, now, rate)
            else:
                rate = base[2]
            cpu_pct += rate
        return cpu_pct, rss / _MB, live, gone

    def get_process_metrics(self, process_name: str) -> ResourceMetrics:
        """CPU % and RSS MiB summed over the processes matching ``process_name``.

        Matching follows :func:`process_matches`; children of a matching process are
        included (a master and its workers are summed). ``cpu_usage_percent`` is the sum of
        each process's CPU time over the interval since the previous call, as a percentage of
        one core (like ``top``; above 100 when several cores are busy); a process seen for the
        first time contributes its average since it started. Disk use and network Mbps are
        the system's. ``process_name``, ``process_count`` and ``pids`` say what was summed.
        No process's share is ever above what its cores allow (100 % per core it may run on),
        the first reading of a young process included (its start time is known only to the
        clock tick, so its average since start can overshoot).

        PIDs are cached per name: the process table is rescanned only when the cache is
        empty, a cached process has exited (or its PID was reused), or ``refresh_interval``
        has passed; a name that matched nothing is rescanned at most every
        ``rescan_interval`` seconds.

        Raises:
            ProcessNotFoundError: no running process matches (never reported as 0 % CPU).
        """
        with self._lock:
            now = self._clock()
            tracked = self._tracked.get(process_name)
            if tracked is None:
                missed = self._missing_since.get(process_name)
                if missed is not None and now - missed < self.rescan_interval:
                    raise ProcessNotFoundError(process_name)
                tracked = self._rescan(process_name, None, now)
            elif self.refresh_interval is not None and now - tracked.scanned_at >= (
                self.refresh_interval
            ):
                tracked = self._rescan(process_name, tracked, now)
            cpu, rss, live, gone = self._sample(tracked, now)
            if gone:
                tracked = self._rescan(process_name, tracked, now)
                cpu, rss, live, gone = self._sample(tracked, now)
            if not live:
                self._tracked.pop(process_name, None)
                self._missing_since[process_name] = now
                raise ProcessNotFoundError(process_name)
            for pid in gone:
                tracked.procs.pop(pid, None)
                tracked.cpu.pop(pid, None)
                tracked.ceiling.pop(pid, None)
            self._tracked[process_name] = tracked
            self._missing_since.pop(process_name, None)
            net = self._network_mbps(now)
            disk = self._disk_percent()
        return ResourceMetrics(
            cpu_usage_percent=round(cpu, 2),
            memory_usage_mb=round(rss, 2),
            disk_usage_percent=disk,
            network_io_mbps=round(net, 4),
            process_name=process_name,
            process_count=len(live),
            pids=tuple(sorted(live)),
        )

    def forget(self, names: Iterable[str] | None = None) -> None:
        """Drop cached PIDs (for ``names``, or all), forcing a rescan on the next call."""
        with self._lock:
            for name in list(self._tracked) if names is None else names:
                self._tracked.pop(name, None)
                self._missing_since.pop(name, None)
