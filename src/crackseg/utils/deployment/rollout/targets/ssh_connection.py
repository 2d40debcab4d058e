"""One OpenSSH connection per host, reused across commands, its host key checked.

The ``ssh`` client does the work: key authentication (``BatchMode``: never a prompt),
``StrictHostKeyChecking=yes`` against a known_hosts file (an unknown or changed host key
is a refusal, never a question), and a ControlMaster socket so each command after the
first costs one round trip instead of a handshake. A script goes to the remote ``sh`` on
stdin, so values in it (environment secrets) never appear in a process list on either
side.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from crackseg.utils.deployment.errors import (
    ConfigError,
    ConfigProblems,
    DeploymentError,
)
from crackseg.utils.deployment.processes import check_host

__all__ = ["HostKeyError", "SSHConnection", "SSHError", "SSHHost"]

logger = logging.getLogger(__name__)

_HOST_KEY_SIGNS = (
    "Host key verification failed",
    "host key is known",
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "No matching host key",
)


class SSHError(DeploymentError):
    """An ssh command could not run or failed on the remote host."""


class HostKeyError(SSHError):
    """The remote host's key is unknown to, or differs from, the known_hosts file."""


@dataclass(frozen=True)
class SSHHost:
    """A machine to run versions on.

    ``host`` is what ssh connects to; ``address`` is where nginx and the monitor reach the
    services started there (default: ``host``); it also replaces ``{host}`` in commands.
    ``key_path`` is the private key (default: ssh's own choice); ``known_hosts`` the file
    its host key must be in (default ``~/.ssh/known_hosts``). ``env`` adds environment
    variables for services on this host only.
    """

    host: str
    user: str = field(default_factory=getpass.getuser)
    port: int = 22
    key_path: str | None = None
    known_hosts: str | None = None
    address: str | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        found = ConfigProblems()  # every problem in one error
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            found.add("hosts[].host", f"must be a host name or address, got {self.host!r}")
        elif self.address is None:
            # ``host`` is also where the router sends traffic: refused now, not at the switch.
            try:
                check_host("hosts[].host", self.host)
            except ConfigError as exc:
                found.add(
                    exc.field, f"{exc.problem}: the router sends traffic there; or give address"
                )
        if self.address is not None:
            with found.check():
                check_host("hosts[].address", self.address)
        if not self.user or self.user.startswith("-") or "@" in self.user:
            found.add("hosts[].user", f"must be a user name, got {self.user!r}")
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 < self.port < 65536
        ):
            found.add("hosts[].port", f"must be a TCP port 1..65535, got {self.port!r}")
        if self.key_path is not None and not os.path.isfile(os.path.expanduser(self.key_path)):
            found.add("hosts[].key_path", f"no key file at {self.key_path!r}")
        found.raise_any()

    @property
    def name(self) -> str:
        """``user@host:port``: in logs, errors and instance records."""
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def service_address(self) -> str:
        return self.address or self.host


class SSHConnection:
    """Runs scripts on one host through a reused OpenSSH connection. Thread-safe.

    Every command has a timeout; a master that went away is replaced on the next command
    (until then commands connect on their own: slower, still correct).
    """

    def __init__(
        self,
        host: SSHHost,
        control_dir: str | os.PathLike[str],
        *,
        ssh_binary: str | None = None,
        connect_timeout: float = 10.0,
        persist: float = 300.0,
    ) -> None:
        binary = ssh_binary or shutil.which("ssh") or "/usr/bin/ssh"
        found = ConfigProblems()  # every problem in one error
        if not os.access(binary, os.X_OK):
            found.add("ssh_binary", f"{binary!r} is not an executable ssh; install openssh-client")
        found.positive("connect_timeout", connect_timeout)
        found.positive("persist", persist)
        found.raise_any()
        self.host = host
        self.ssh_binary = binary
        self.connect_timeout = float(connect_timeout)
        # A unix socket path must stay under ~100 bytes: a hash, not the host's name.
        digest = hashlib.sha1(host.name.encode()).hexdigest()[:16]
        self._control_path = str(Path(control_dir) / f"cm-{digest}")
        self._persist = int(persist)
        self._lock = threading.Lock()
        self._master_up = False

    def _options(self) -> list[str]:
        h = self.host
        known = os.path.expanduser(h.known_hosts or "~/.ssh/known_hosts")
        opts = [
            "-p", str(h.port),
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no",
            "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-o", f"ControlPath={self._control_path}",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if h.key_path:
            opts += ["-o", "IdentitiesOnly=yes", "-i", os.path.expanduser(h.key_path)]
        return opts

    def _destination(self) -> str:
        return f"{self.host.user}@{self.host.host}"

    def _refusal(self, stderr: str) -> SSHError:
        text = " | ".join(line for line in stderr.strip().splitlines() if line)[-500:]
        if any(sign in stderr for sign in _HOST_KEY_SIGNS):
            known = os.path.expanduser(self.host.known_hosts or "~/.ssh/known_hosts")
            return HostKeyError(
                f"ssh {self.host.name}: its host key is not in {known} or does not match it; "
                "refusing to connect, nothing was started. Check the host's fingerprint, then "
                f"add it: ssh-keyscan -p {self.host.port} {self.host.host} >> {known}"
            )
        return SSHError(f"ssh {self.host.name} failed: {text or 'no message'}")

    def connect(self) -> None:
        """Open the shared connection (checks the host key and the login); raises
        :class:`HostKeyError` or :class:`SSHError`."""
        with self._lock:
            if self._master_up and os.path.exists(self._control_path):
                return
            # The master lives on after this command (ControlPersist) and keeps its stderr:
            # a file, not a pipe, or reading the pipe would wait for the master to exit.
            with tempfile.TemporaryFile() as err:
                cmd = [
                    self.ssh_binary, *self._options(),
                    "-o", "ControlMaster=auto", "-o", f"ControlPersist={self._persist}",
                    self._destination(), "true",
                ]  # fmt: skip
                try:
                    proc = subprocess.run(
                        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                        timeout=self.connect_timeout + 5, check=False,
                    )  # fmt: skip
                except subprocess.TimeoutExpired:
                    raise SSHError(
                        f"ssh {self.host.name}: no connection within {self.connect_timeout:g}s"
                    ) from None
                except OSError as exc:
                    raise SSHError(f"cannot run {self.ssh_binary}: {exc}") from exc
                err.seek(0)
                stderr = err.read(64 * 1024).decode(errors="replace")
            if proc.returncode != 0:
                raise self._refusal(stderr)
            self._master_up = True

    def command(self, remote: str) -> list[str]:
        """The argv running ``remote`` on the host over the shared connection (or a
        connection of its own while the shared one is down)."""
        return [
            self.ssh_binary, *self._options(), "-o", "ControlMaster=no",
            self._destination(), remote,
        ]  # fmt: skip

    def run(self, script: str, *, timeout: float = 30.0) -> str:
        """Run ``script`` with the remote ``sh``; return its stdout. A non-zero exit raises
        :class:`SSHError` with the script's last error lines."""
        self.connect()
        cmd = self.command("sh -s")
        try:
            proc = subprocess.run(
                cmd, input=script.encode(), capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise SSHError(f"ssh {self.host.name}: command timed out after {timeout:g}s") from None
        except OSError as exc:
            raise SSHError(f"cannot run {self.ssh_binary}: {exc}") from exc
        stderr = proc.stderr[-64 * 1024 :].decode(errors="replace")
        if proc.returncode == 255:
            with self._lock:
                self._master_up = False
            raise self._refusal(stderr)
        if proc.returncode != 0:
            lines = [line for line in stderr.strip().splitlines() if line][-3:]
            raise SSHError(
                f"on {self.host.name}: exit status {proc.returncode}: "
                + (" | ".join(lines) or "no message")
            )
        return proc.stdout[-1024 * 1024 :].decode(errors="replace")

    def close(self) -> None:
        """Stop the shared connection (commands still running on it finish first)."""
        with self._lock:
            self._master_up = False
        try:
            subprocess.run(
                [self.ssh_binary, *self._options(), "-O", "exit", self._destination()],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            logger.warning("could not stop the ssh connection to %s", self.host.name)
