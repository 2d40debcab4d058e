"""``crackseg-monitor demo`` as a child process: its output collected line by line, its status
page URL, and a Ctrl-C stop. Shared by the demo's own tests and the README's commands."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("crackseg-monitor")


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        found = wait_until(lambda: re.search(pattern, self.output()), timeout, repr(pattern))
        assert isinstance(found, re.Match)
        return found

    def get(self, path: str) -> Any:
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return orjson.loads(resp.read())


def start_demo(*args: str, env: dict[str, str] | None = None) -> Demo:
    proc = subprocess.Popen(
        [str(CLI), "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    demo = Demo(proc)
    threading.Thread(target=demo.pump, daemon=True).start()
    return demo


def stop_demo(demo: Demo) -> int:
    if demo.proc.poll() is None:
        demo.proc.send_signal(signal.SIGINT)
    try:
        return demo.proc.wait(40)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.proc.pid, signal.SIGKILL)
