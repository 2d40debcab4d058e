"""The nginx master a router runs: finding one already serving its folder, and stopping it;
the host's master of include mode: its configuration tested with our files, and signalled.

A router whose process died (kill -9 of the program that made it) leaves its nginx serving;
a new router on the same folder adopts that master through the pid file instead of failing
to bind the port, so traffic keeps flowing while the new program takes over.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psutil

from crackseg.utils.deployment.errors import RouterError
from crackseg.utils.deployment.files import atomic_write
from crackseg.utils.deployment.processes import signal_group

__all__ = [
    "adoptable_master",
    "log_tail",
    "master_alive",
    "nginx_test",
    "read_pid",
    "signal_host",
    "stop_master",
    "test_host_config",
    "worker_pids",
]


def adoptable_master(workdir: Path) -> tuple[int, int] | None:
    """``(pid, port)`` of a live nginx master started on ``workdir`` (its pid file and
    ``nginx.conf``), or None."""
    try:
        pid = int((workdir / "nginx.pid").read_text().strip())
        conf = (workdir / "nginx.conf").read_text()
    except (OSError, ValueError):
        return None
    # ``listen "host:port";`` (older configs wrote it unquoted)
    match = re.search(r'^\s*listen\s+"?\S*?:([0-9]+)"?;', conf, re.M)
    if match is None or not master_alive(pid):
        return None
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    # The pid may have been reused by another program since: only our own command line counts.
    if not cmdline or "nginx" not in cmdline[0] or str(workdir) not in cmdline:
        return None
    return pid, int(match.group(1))


def read_pid(pid_file: Path) -> int | None:
    """The pid in an nginx pid file, or None (no file, or not a number)."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def worker_pids(master: int | None) -> list[int]:
    """The pids of ``master``'s workers (none when it does not run)."""
    if master is None:
        return []
    try:
        return [c.pid for c in psutil.Process(master).children()]
    except psutil.Error:
        return []


def log_tail(error_log: Path, lines: int = 3) -> str:
    """The last ``lines`` of nginx's ``error_log``, for an error message."""
    try:
        tail = error_log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "no nginx error log"
    return "nginx error log: " + " | ".join(tail) if tail else "nginx error log is empty"


def master_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_master(pid: int, timeout: float) -> None:
    """Graceful quit of an nginx master we did not start (no child handle), then kill."""
    signal_group(pid, signal.SIGQUIT)
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.TimeoutExpired:
        signal_group(pid, signal.SIGKILL)
    except psutil.Error:
        pass
    signal_group(pid, signal.SIGKILL)  # stray workers


def test_host_config(binary: str, main_config: str, candidates: Mapping[Path, str]) -> None:
    """``nginx -t`` of the host's ``main_config`` with each text of ``candidates`` in place of
    the file at its path (files that configuration includes): :class:`RouterError` with
    nginx's words if refused.

    The candidates sit at those paths only while nginx reads them, and the previous texts
    are put back before this returns: nginx reads its files only at a reload, and the router
    reloads after this, under its lock.
    """
    previous = {live: live.read_bytes() if live.exists() else None for live in candidates}
    try:
        for live, text in candidates.items():
            atomic_write(live, text)
        nginx_test([binary, "-t", "-q", "-c", main_config], f"nginx -t of {main_config}")
    finally:
        for live, old in previous.items():
            if old is None:
                live.unlink(missing_ok=True)
            else:
                atomic_write(live, old)


def signal_host(binary: str, main_config: str | None, action: str) -> None:
    """``nginx [-c main_config] -s action`` (``reload``, ``reopen``) to the host's master:
    :class:`RouterError` with nginx's words if it fails or cannot run."""
    cmd = (
        [binary, "-s", action] if main_config is None else [binary, "-c", main_config, "-s", action]
    )
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RouterError(f"nginx -s {action} could not run: {exc}") from exc
    if out.returncode != 0:
        raise RouterError(f"nginx -s {action} failed: {out.stderr.decode(errors='replace')}")


def nginx_test(command: list[str], what: str = "nginx -t") -> None:
    """Run ``command`` (an ``nginx -t``): :class:`RouterError` with nginx's last words if it
    refuses the configuration or cannot run."""
    try:
        out = subprocess.run(command, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RouterError(f"nginx -t could not run: {exc}") from exc
    if out.returncode != 0:
        detail = out.stderr.decode(errors="replace").strip().splitlines()
        raise RouterError(
            f"{what} rejected the config (a previous one keeps serving): " + " | ".join(detail[-3:])
        )
