"""A throwaway nginx (Debian's /usr/sbin/nginx) for benchmarks (tests use tests/support/nginx.py).

    with Nginx() as nginx:                      # 127.0.0.1, a free port, 1 worker
        url = nginx.url("/health")              # -> 200 {"status":"healthy"}

Everything lives in a temporary prefix (config, pid, logs, temp paths) removed on exit;
nothing touches /etc/nginx or /var/log. ``listen_hosts`` makes it listen on several
loopback addresses with one port (``nginx.port``); ``cpus`` pins its processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

from crackseg.utils.deployment.processes import free_port

NGINX_BIN = "/usr/sbin/nginx"
HEALTH_BODY = '{"status":"healthy"}'


class Nginx:
    """Start nginx on ``listen_hosts`` and a free port; stop and clean up on exit.

    Serves ``/health`` (200 JSON healthy) and ``/degraded`` (503 JSON degraded); extra
    ``server``-level directives can be given as ``extra_config``.
    """

    def __init__(
        self,
        *,
        listen_hosts: Iterable[str] = ("127.0.0.1",),
        workers: int = 1,
        worker_connections: int = 16000,
        keepalive_timeout: float = 75.0,
        keepalive_requests: int = 1_000_000,
        cpus: set[int] | None = None,
        extra_config: str = "",
        binary: str | None = None,
    ) -> None:
        self.listen_hosts = list(listen_hosts)
        self.workers = workers
        self.worker_connections = worker_connections
        self.keepalive_timeout = keepalive_timeout
        self.keepalive_requests = keepalive_requests
        self.cpus = cpus
        self.extra_config = extra_config
        self.binary = binary or shutil.which("nginx") or NGINX_BIN
        self.port = 0
        self.prefix: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str = "/health", host: str | None = None) -> str:
        return f"http://{host or self.listen_hosts[0]}:{self.port}{path}"

    @property
    def pids(self) -> list[int]:
        """The master's and the workers' process ids."""
        if self.proc is None:
            return []
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            pids += [int(p) for p in children.read_text().split()]
        return pids

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if not os.path.exists(self.binary):
            raise RuntimeError(f"nginx not found at {self.binary} (apt-get install nginx-light)")
        self.prefix = Path(tempfile.mkdtemp(prefix="crackseg-nginx-"))
        last_error = ""
        for _ in range(5):  # the free port may be taken between probing and binding
            self.port = free_port(self.listen_hosts[0])
            conf = self.prefix / "nginx.conf"
            conf.write_text(self._config())
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.prefix), "-c", str(conf), "-e", "stderr"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_ready(10.0):
                self._pin()
                return
            last_error = self._reap()
        self.stop()
        raise RuntimeError(f"nginx did not start: {last_error[-1000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self._reap()
            self.proc = None
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    def _config(self) -> str:
        assert self.prefix is not None
        p = self.prefix
        listens = "\n".join(f"        listen {h}:{self.port};" for h in self.listen_hosts)
        return f"""
daemon off;
master_process on;
worker_processes {self.workers};
worker_rlimit_nofile {self.worker_connections + 100};
pid {p}/nginx.pid;
error_log stderr error;
events {{ worker_connections {self.worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    keepalive_timeout {self.keepalive_timeout:g}s;
    keepalive_requests {self.keepalive_requests};
    server {{
{listens}
        default_type application/json;
        location /health {{ return 200 '{HEALTH_BODY}'; }}
        location /degraded {{ return 503 '{{"status":"degraded"}}'; }}
        {self.extra_config}
    }}
}}
"""

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        pending = set(self.listen_hosts)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            for host in list(pending):
                try:
                    with socket.create_connection((host, self.port), timeout=0.5):
                        pending.discard(host)
                except OSError:
                    pass
            if not pending:
                return True
            time.sleep(0.02)
        return False

    def _pin(self) -> None:
        if self.cpus and hasattr(os, "sched_setaffinity"):
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(pid, self.cpus)

    def _reap(self) -> str:
        """Stop the process (TERM, then KILL) and return what it wrote to stderr."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
        return err.decode(errors="replace")
