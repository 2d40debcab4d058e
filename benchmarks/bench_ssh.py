"""Rollouts onto other hosts: what one SSH step costs.

Real parts: Debian's sshd started here (throwaway keys, tests/support/sshd.py) on 127.0.0.2,
the OpenSSH client, the sample service started by SSHTarget. Figures (median, min-max
of RUNS runs): one command on the reused connection against a fresh connection (the
handshake ControlMaster saves), then SSHTarget's own steps: deploy (free port + start,
until the process runs), start -> healthy, is_alive (one round trip, asked at every gate
probe, asked of a kept-open remote shell) and teardown (SIGTERM, the service's graceful
exit).

Most of a command's time on the reused connection is the remote login shell starting
(it reads the user's startup files): a lean shell for the deploy user makes every step
faster.

Run: python benchmarks/bench_ssh.py [runs]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.sshd import SSHServer  # noqa: E402

from crackseg.utils.deployment.rollout.targets.ssh import SSHHost, SSHTarget  # noqa: E402
from crackseg.utils.deployment.rollout.targets.ssh_connection import SSHConnection  # noqa: E402

SAMPLE = [sys.executable, "-m", "crackseg.utils.deployment.service.sample_service"]
COMMAND = [*SAMPLE, "--host", "{host}", "--port", "{port}", "--version", "{version}"]


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ms ({min(values):.0f}-{max(values):.0f})"


def _healthy(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} never became healthy")


def _one_round(t: SSHTarget, version: str) -> tuple[float, float, float, float, float]:
    t0 = time.perf_counter()
    inst = t.deploy(version)
    deploy = (time.perf_counter() - t0) * 1000.0
    healthy = _timed(lambda: _healthy(inst.health_check_url))
    alive = _timed(lambda: t.is_alive(inst))
    remote = t._remotes[inst.instance_id]
    alive_cmd = _timed(lambda: remote.conn.run(f"kill -0 {remote.pid}\n"))
    stop = _timed(lambda: t.teardown(inst))
    return deploy, healthy, alive, alive_cmd, stop


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    work = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    server = SSHServer("/usr/sbin/sshd", work)
    try:
        server.wait_ready()
        known = server.known_hosts("127.0.0.2")
        host = SSHHost("127.0.0.2", user=server.user, port=server.port,
                       key_path=str(server.client_key), known_hosts=str(known))  # fmt: skip
        conn = SSHConnection(host, tempfile.mkdtemp(prefix="cs-b-"))
        first = _timed(conn.connect)
        reused = [_timed(lambda: conn.run("true\n")) for _ in range(runs * 2)]
        conn.close()
        fresh_cmd = [
            "ssh", "-p", str(server.port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "IdentitiesOnly=yes", "-i", str(server.client_key),
            f"{server.user}@127.0.0.2", "sh -s",
        ]  # fmt: skip
        fresh = [
            _timed(lambda: subprocess.run(fresh_cmd, input=b"true\n", check=True, timeout=30))
            for _ in range(runs)
        ]
        rounds: list[tuple[float, float, float, float, float]] = []
        with SSHTarget(COMMAND, [host], log_dir=str(work / "logs"), default_grace_period=5) as t:
            rounds = [_one_round(t, f"v{i}") for i in range(runs)]
        deploy, healthy, alive, alive_cmd, stop = (list(col) for col in zip(*rounds, strict=True))
    finally:
        server.close()
    print("## Rollouts over SSH (bench_ssh.py)\n")
    print(f"Command: `python benchmarks/bench_ssh.py {runs}`. sshd on 127.0.0.2 started by the")
    print("benchmark; median (min-max). The remote login shell is root's bash, whose startup")
    print("files run for every command.\n")
    print("| figure | value | reference (same run) |")
    print("|---|---|---|")
    print(
        f"| one command, reused connection (ControlMaster) | {_fmt(reused)} "
        f"| fresh connection per command: {_fmt(fresh)}; first connect: {first:.0f} ms |"
    )
    print(f"| SSHTarget.deploy: free port + start, until the process runs | {_fmt(deploy)} | |")
    print(f"| started -> /health answers 200 | {_fmt(healthy)} | |")
    print(
        f"| SSHTarget.is_alive (at every gate probe; kept-open remote shell) | {_fmt(alive)} "
        f"| the same question as its own ssh command: {_fmt(alive_cmd)} |"
    )
    print(f"| SSHTarget.teardown (SIGTERM, graceful exit) | {_fmt(stop)} | |")
    print()  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
