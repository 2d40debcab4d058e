"""A real idle process with a unique name, for tests that watch a deployment's process."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator


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
