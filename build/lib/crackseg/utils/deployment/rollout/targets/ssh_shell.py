"""One remote ``sh`` kept open over the shared SSH connection, for short commands.

Each ssh command makes the remote side start the user's login shell, which reads its
startup files: often most of a command's time. A kept-open ``sh`` reading commands from
stdin answers the frequent questions (is this process alive? which ports are taken?) in
one round trip. Each command runs in a subshell with stdin from ``/dev/null`` (so it can
neither eat the next command nor end the shell) and ends with a marker line carrying a
random token and its exit status.
"""

from __future__ import annotations

import os
import re
import secrets
import selectors
import subprocess
import tempfile
import threading
import time
from typing import IO, Any

from crackseg.utils.deployment.rollout.targets.ssh_connection import SSHConnection, SSHError

__all__ = ["RemoteShell"]

_MAX_OUTPUT = 1024 * 1024


class RemoteShell:
    """Runs short scripts in one kept-open remote ``sh``; thread-safe (one at a time).

    A shell that died or timed out is replaced on the next call; a timeout kills it so a
    stuck command cannot hold the next one.
    """

    def __init__(self, conn: SSHConnection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._err: IO[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        self.conn.connect()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _drop
        argv = self.conn.command("sh")
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err
            )
        except OSError as exc:
            raise SSHError(f"cannot run {argv[0]}: {exc}") from exc
        return self._proc

    def _drop(self) -> str:
        proc, self._proc = self._proc, None
        detail = ""
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        if self._err is not None:
            self._err.seek(0)
            detail = self._err.read(4096).decode(errors="replace").strip()
            self._err.close()
            self._err = None
        return detail

    def run(self, script: str, *, timeout: float = 30.0) -> str:
        """``script``'s output (stdout and stderr); :class:`SSHError` on a non-zero exit,
        a dead shell or ``timeout``."""
        token = secrets.token_hex(8)
        marker = re.compile(rb"\n@@crackseg-" + token.encode() + rb" ([0-9]+)\n")
        wrapped = (
            f'(\n{script}\n) </dev/null 2>&1\ns=$?\nprintf "\\n@@crackseg-%s %s\\n" {token} "$s"\n'
        )
        with self._lock:
            proc = self._proc if self._proc is not None and self._proc.poll() is None else None
            if proc is None:
                self._drop()
                proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(wrapped.encode())
                proc.stdin.flush()
            except OSError:
                raise SSHError(f"ssh {self.conn.host.name}: shell closed: {self._drop()}") from None
            return self._read(proc.stdout, marker, timeout)

    def _read(self, stdout: IO[bytes], marker: re.Pattern[bytes], timeout: float) -> str:
        buf = b"\n"  # so a marker right at the start still follows a newline
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            while True:
                match = marker.search(buf)
                if match is not None:
                    out = buf[1 : match.start()].decode(errors="replace")
                    status = int(match.group(1))
                    if status != 0:
                        lines = [line for line in out.strip().splitlines() if line][-3:]
                        raise SSHError(
                            f"on {self.conn.host.name}: exit status {status}: "
                            + (" | ".join(lines) or "no message")
                        )
                    return out
                left = deadline - time.monotonic()
                if left <= 0:
                    self._drop()
                    raise SSHError(
                        f"ssh {self.conn.host.name}: command timed out after {timeout:g}s"
                    )
                if not sel.select(left):
                    continue
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    raise SSHError(
                        f"ssh {self.conn.host.name}: shell closed: {self._drop() or 'no message'}"
                    )
                buf += chunk
                if len(buf) > _MAX_OUTPUT:
                    self._drop()
                    raise SSHError(f"ssh {self.conn.host.name}: output over {_MAX_OUTPUT} bytes")

    def close(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.stdin is not None:
                try:
                    proc.stdin.close()  # the remote sh reads EOF and exits
                    proc.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._drop()

    def __enter__(self) -> RemoteShell:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
