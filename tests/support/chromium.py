"""Headless Chromium (Debian ``chromium``) for tests: one command at a time, in its own process
group, nothing of it left running on return. Tests get the binary from the ``chromium_bin``
fixture (tests/support/programs.py)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.support.procs import stop_group


def run_chromium(
    binary: str, profile: Path, url: str, *extra: str, size: tuple[int, int] = (1400, 1900)
) -> bytes:
    """Run one headless Chromium command at window ``size``; its whole process group is gone
    on return."""
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
        f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=4000", *extra, url,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        stop_group(proc, signal.SIGKILL, 5)  # helpers (zygote, GPU) that outlived it
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out
