"""The nginx master a router runs: finding one already serving its folder, and stopping it.

A router whose process died (kill -9 of the program that made it) leaves its nginx serving;
a new router on the same folder adopts that master through the pid file instead of failing
to bind the port, so traffic keeps flowing while the new program takes over.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import psutil

from crackseg.utils.deployment.errors import RouterError
from crackseg.utils.deployment.processes import signal_group

__all__ = ["adoptable_master", "master_alive", "stop_master", "test_host_config"]


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


def test_host_config(binary: str, main_config: str, live: Path, candidate: Path) -> None:
    """``nginx -t`` of the host's ``main_config`` with ``candidate`` in place of ``live`` (the
    file that configuration includes): :class:`RouterError` with nginx's words if refused.

    The candidate sits at ``live``'s path only while nginx reads it, and the previous text
    is put back before this returns: nginx reads its files only at a reload, and the router
    reloads after this, under its lock.
    """
    previous = live.read_bytes() if live.exists() else None
    tmp = live.with_name(live.name + ".testing")
    tmp.write_bytes(candidate.read_bytes())
    os.replace(tmp, live)
    try:
        out = subprocess.run(
            [binary, "-t", "-q", "-c", main_config], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RouterError(f"nginx -t could not run: {exc}") from exc
    finally:
        if previous is None:
            live.unlink(missing_ok=True)
        else:
            tmp.write_bytes(previous)
            os.replace(tmp, live)
    if out.returncode != 0:
        detail = out.stderr.decode(errors="replace").strip().splitlines()
        raise RouterError(
            f"nginx -t of {main_config} rejected the config (a previous one keeps serving): "
            + " | ".join(detail[-3:])
        )
