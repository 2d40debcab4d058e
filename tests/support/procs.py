"""Child processes for tests: a real idle process with a unique name (for tests that watch a
deployment's process), and the one way to stop a child's whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def named_process(prefix: str = "crackseg_svc") -> Iterator[str]:
    """Run an idle Python process whose command line ends in a unique name; yield the name.

    ``process_matches`` finds it by that argument (an interpreter running ``... NAME``).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    code = "import sys, time; print('ready', flush=True); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code, name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield name
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def stop_group(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 10.0) -> int:
    """Stop a child started with ``start_new_session=True`` and everything it spawned.

    Sends ``sig`` to its process group, waits ``grace`` seconds, then SIGKILLs the group (the
    helpers a program leaves behind: Chromium's zygote, nginx workers) and reaps the child.
    Returns the child's exit status.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        return proc.wait(5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
