"""Helpers for the service and CLI tests: a scriptable HTTP endpoint and the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.httpd import Httpd, QuietHandler
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "crackseg.utils.deployment.service.cli.main"]


class Endpoint:
    """A real HTTP server on 127.0.0.1 whose ``/health`` answer the test sets (status, body)."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.body = body if body is not None else {"status": "healthy"}
        endpoint = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                data = json.dumps(endpoint.body).encode()
                self.send_response(endpoint.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = Httpd(Handler)

    @property
    def url(self) -> str:
        return self.httpd.url()

    def close(self) -> None:
        self.httpd.close()


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("CRACKSEG_MONITOR_CONFIG", None)
    e.update(extra)
    return e


def cli(*args: str, timeout: float = 60, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run ``crackseg-monitor ARGS`` to completion."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env(**extra_env)
    )


def get_json(url: str, token: str | None = None, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class Running:
    """A CLI subprocess whose stdout and stderr lines are collected as they arrive."""

    def __init__(self, *args: str, **extra_env: str) -> None:
        self.proc = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(**extra_env),
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def url(self, timeout: float = 30.0) -> str:
        """The ``serving on URL`` the service printed."""

        def find() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.err[-10:]}")
            for line in self.out:
                if line.startswith("serving on "):
                    return line.split()[-1]
            return None

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = find()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no 'serving on' line; stderr: {self.err[-10:]}")

    def wait_log(self, text: str, timeout: float = 20.0) -> str:
        return str(
            wait_until(
                lambda: next((line for line in self.err if text in line), None), timeout, repr(text)
            )
        )

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(5)
        return rc

    def stop(self) -> None:
        """SIGTERM first, so a supervisor can stop the processes it started; then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.wait(10)


@contextmanager
def running(*args: str, **extra_env: str) -> Iterator[Running]:
    r = Running(*args, **extra_env)
    try:
        yield r
    finally:
        r.stop()
