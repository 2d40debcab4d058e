"""A real OpenSSH server for tests: throwaway host and client keys, on a free port of
127.0.0.1, 127.0.0.2 and 127.0.0.3 (all of 127/8 is loopback on Linux), so one sshd
plays several hosts. The ``sshd`` fixture (one server per test module) is a plugin of
tests/conftest.py."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.rollout.targets.ssh_connection import SSHHost
from tests.support.wait import free_port, wait_until

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


class SSHServer:
    """``sshd -D`` accepting ``client_key`` for the current user (root login by key)."""

    def __init__(self, binary: str, workdir: Path, keygen: str = "ssh-keygen") -> None:
        self.workdir = workdir
        self.user = getpass.getuser()
        self.port = free_port()
        self.host_key = workdir / "host_key"
        self.client_key = workdir / "client_key"
        for key in (self.host_key, self.client_key):
            subprocess.run(
                [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True
            )
        (workdir / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        listen = "".join(f"ListenAddress {h}\n" for h in HOSTS)
        config = workdir / "sshd_config"
        config.write_text(
            f"Port {self.port}\n{listen}HostKey {self.host_key}\nPidFile {workdir}/sshd.pid\n"
            f"AuthorizedKeysFile {workdir}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nMaxSessions 64\nMaxStartups 64\nLogLevel ERROR\n"
        )
        if os.geteuid() == 0:
            # sshd's privilege-separation folder; Debian creates it only from its unit file.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.log = (workdir / "sshd.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        def listening() -> bool:
            assert self.proc.poll() is None, (self.workdir / "sshd.log").read_text()
            with socket.create_connection((HOSTS[-1], self.port), timeout=1) as s:
                return s.recv(64).startswith(b"SSH-")

        wait_until(listening, timeout, "sshd to listen")

    def known_hosts(self, *hosts: str) -> Path:
        """A known_hosts file holding this server's key for ``hosts`` only."""
        key = " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])
        path = self.workdir / f"known_hosts-{'-'.join(hosts) or 'none'}"
        path.write_text("".join(f"[{h}]:{self.port} {key}\n" for h in hosts))
        return path

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def sshd(
    tmp_path_factory: pytest.TempPathFactory, sshd_bin: str, ssh_bin: str
) -> Iterator[SSHServer]:
    """A started :class:`SSHServer`, shared by the tests of one module."""
    server = SSHServer(sshd_bin, tmp_path_factory.mktemp("sshd"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


def ssh_hosts(server: SSHServer, known: Path, *names: str) -> list[SSHHost]:
    """``names`` (of :data:`HOSTS`) as hosts the server's client key logs in to."""
    return [
        SSHHost(
            n,
            user=server.user,
            port=server.port,
            key_path=str(server.client_key),
            known_hosts=str(known),
        )
        for n in names
    ]
