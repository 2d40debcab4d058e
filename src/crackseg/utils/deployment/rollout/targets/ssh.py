"""Versions on other hosts: each instance started over SSH on a free port of its host.

The remote side needs only a POSIX ``sh`` (with ``awk`` and ``sort``), ``setsid`` and
Linux's ``/proc`` (to find a free port and to tell the recorded process from a later one
with the same PID): no agent.
Each instance runs in its own session (so a stop reaches its whole process tree), logs
to ``<log_dir>/<instance_id>.log`` on its host and records ``<pid> <start time>`` next to
it; stopping signals that recorded process group, SIGTERM then SIGKILL after the grace.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import shlex
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from crackseg.utils.deployment.errors import ConfigError, ConfigProblems, DeploymentError
from crackseg.utils.deployment.redact import redact_text
from crackseg.utils.deployment.rollout.targets.base import (
    DeploymentTarget,
    Instance,
    plan_launch,
    substitute,
)
from crackseg.utils.deployment.rollout.targets.ssh_connection import (
    HostKeyError,
    SSHConnection,
    SSHError,
    SSHHost,
)
from crackseg.utils.deployment.rollout.targets.ssh_shell import RemoteShell

__all__ = ["HostKeyError", "SSHError", "SSHHost", "SSHTarget"]

logger = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# "is the recorded process still the one we started": alive, not a zombie (nobody may reap
# it on a host whose init does not), and started at the recorded time (not a reused PID).
_ALIVE_FN = """\
alive() {
  _want=$2
  s=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
  s=${s##*) }
  set -- $s
  [ "$1" != Z ] && [ "${20}" = "$_want" ]
}
"""

# The port range, then each local port in use (hex), once: a busy host has thousands of
# sockets, most of them on a few ports.
_PORTS = (
    "cat /proc/sys/net/ipv4/ip_local_port_range\n"
    "awk 'FNR > 1 { n = split($2, a, \":\"); print a[n] }' /proc/net/tcp /proc/net/tcp6"
    " 2>/dev/null | sort -u\n"
)

_START = """\
set -e
mkdir -p -- {log_dir}
(umask 077; : >> {log})
{cd}
command -v -- {program} >/dev/null 2>&1 || {{ echo "program not found: "{program} >&2; exit 3; }}
{exports}
printf '%s\\n' "# $(date -u +%Y-%m-%dT%H:%M:%SZ) starting: "{shown} >> {log}
setsid {argv} >> {log} 2>&1 < /dev/null &
pid=$!
# Gone already (and reaped): record start time 0, which never matches a live process.
s=$(cat /proc/$pid/stat 2>/dev/null) || {{ echo "started $pid 0"; exit 0; }}
s=${{s##*) }}; set -- $s
printf '%s %s\\n' "$pid" "${{20}}" > {pid_file}
echo "started $pid ${{20}}"
"""

_STOP = (
    _ALIVE_FN
    + """\
pid=%(pid)d; start=%(start)s
if ! alive $pid $start; then echo gone; exit 0; fi
kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid 2>/dev/null || true
n=0
while alive $pid $start; do
  if [ $n -ge %(ticks)d ]; then kill -KILL -- -$pid 2>/dev/null || kill -KILL $pid; echo killed; exit 0; fi
  sleep 0.1; n=$((n+1))
done
# Members of its group that outlived it (the id cannot be reused while they exist).
kill -KILL -- -$pid 2>/dev/null || true
echo stopped
"""
)


@dataclass
class _Remote:
    instance: Instance
    conn: SSHConnection
    pid: int
    start: str
    stopped: bool = False


class SSHTarget(DeploymentTarget):
    """Starts each instance on one of ``hosts`` over SSH, on a free port of that host.

    ``command`` and its placeholders are as for :class:`~.process.ProcessTarget`, with
    ``{host}`` = the host's ``address``. The host is ``deploy(..., host="name")`` when
    given, else ``hosts[replica_index % len(hosts)]`` for replicated rollouts, else the
    host running the fewest of this target's instances (a blue-green pair lands on two
    hosts). ``env`` (plus the host's own) is exported to the service; its values travel
    in the script on ssh's stdin, never on a command line. ``log_dir`` is a folder on the
    hosts. An unknown host key raises :class:`HostKeyError` before anything starts.
    Thread-safe.
    """

    def __init__(
        self,
        command: Sequence[str] | str,
        hosts: Sequence[SSHHost],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        log_dir: str = "/tmp/crackseg-target",
        health_path: str = "/health",
        default_grace_period: float = 10.0,
        version_args: Mapping[str, Sequence[str]] | None = None,
        command_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        ssh_binary: str | None = None,
    ) -> None:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        found = ConfigProblems()  # every problem in one error
        if not argv:
            found.add("command", "must name a program to run")
        if not hosts:
            found.add("hosts", "give at least one host to deploy to")
        names = [h.name for h in hosts]
        if len(set(names)) != len(names):
            found.add("hosts", "lists the same user@host:port twice")
        for key in [*(env or {}), *(k for h in hosts for k in h.env)]:
            if not _ENV_NAME.match(key):
                found.add("env", f"{key!r} is not a valid environment variable name")
        if not health_path.startswith("/"):
            found.add("health_path", f"must start with '/', got {health_path!r}")
        found.positive("default_grace_period", default_grace_period, allow_zero=True)
        found.positive("command_timeout", command_timeout)
        found.positive("connect_timeout", connect_timeout)  # the connections': named with the rest
        found.raise_any()
        self.command = argv
        self.hosts = list(hosts)
        self.env = dict(env or {})
        self.cwd = cwd
        self.log_dir = log_dir.rstrip("/") or "/"
        self.health_path = health_path
        self.default_grace_period = float(default_grace_period)
        self.version_args = {k: list(v) for k, v in (version_args or {}).items()}
        self.command_timeout = float(command_timeout)
        self._control_dir = _control_dir()
        self._conns = {
            h.name: SSHConnection(h, self._control_dir, ssh_binary=ssh_binary,
                                  connect_timeout=connect_timeout)
            for h in self.hosts
        }  # fmt: skip
        # Frequent short questions (alive? free ports?) go to a kept-open remote shell.
        self._shells = {name: RemoteShell(conn) for name, conn in self._conns.items()}
        self._remotes: dict[str, _Remote] = {}
        self._recent_ports: dict[str, list[int]] = {h.name: [] for h in self.hosts}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    # -- choosing ---------------------------------------------------------------------
    def _pick_host(self, kwargs: Mapping[str, Any]) -> SSHHost:
        wanted = kwargs.get("host")
        if wanted:
            for h in self.hosts:
                if wanted in (h.name, h.host, h.service_address):
                    return h
            raise ConfigError("host", f"{wanted!r} is not one of {[h.name for h in self.hosts]}")
        index = kwargs.get("replica_index")
        if isinstance(index, int) and not isinstance(index, bool):
            return self.hosts[index % len(self.hosts)]
        with self._lock:
            load = {h.name: 0 for h in self.hosts}
            for r in self._remotes.values():
                if not r.stopped:
                    load[r.conn.host.name] += 1
        return min(self.hosts, key=lambda h: load[h.name])

    def _free_port(self, conn: SSHConnection) -> int:
        text = self._shells[conn.host.name].run(_PORTS, timeout=self.command_timeout)
        lines = text.splitlines()
        try:
            low, high = (int(x) for x in lines[0].split())
        except (IndexError, ValueError):
            raise SSHError(f"{conn.host.name}: cannot read its port range (not Linux?)") from None
        used: set[int] = set()
        for line in lines[1:]:
            try:
                used.add(int(line.strip(), 16))
            except ValueError:
                continue
        with self._lock:
            recent = self._recent_ports[conn.host.name]
            for _ in range(200):
                port = random.randint(low, high)
                if port not in used and port not in recent:
                    recent.append(port)
                    del recent[:-256]
                    return port
        raise DeploymentError(f"{conn.host.name}: no free TCP port found")

    # -- the interface ----------------------------------------------------------------
    def deploy(self, version: str, *, environment: str = "", **kwargs: Any) -> Instance:
        """Start one instance of ``version`` on a host; returns once its process runs.

        Keywords: ``host`` (a host's name or address), ``extra_args``, ``env``, ``port``;
        others (``replica_index``...) as the orchestrator passes them. Raises
        :class:`HostKeyError` (nothing started), :class:`SSHError` or
        :class:`DeploymentError` (the program is not on the host...).
        """
        host = self._pick_host(kwargs)
        conn = self._conns[host.name]
        conn.connect()  # host key and login first: a refusal starts nothing
        port = int(kwargs.get("port") or self._free_port(conn))
        plan = plan_launch(
            self.command,
            self.version_args.get(version, ()),
            kwargs.get("extra_args") or (),
            version=version,
            environment=environment,
            host=host.service_address,
            port=port,
        )
        argv, values = plan.argv, plan.values
        env = {**self.env, **host.env, **dict(kwargs.get("env") or {})}
        env.setdefault("PYTHONUNBUFFERED", "1")
        instance_id = f"{plan.name}-{next(self._counter)}"
        log = f"{self.log_dir}/{instance_id}.log"
        q = shlex.quote
        script = _START.format(
            log_dir=q(self.log_dir),
            log=q(log),
            pid_file=q(f"{self.log_dir}/{instance_id}.pid"),
            cd=f"cd -- {q(self.cwd)}" if self.cwd else "",
            program=q(argv[0]),
            exports="\n".join(
                f"export {k}={q(substitute(str(v), values))}" for k, v in env.items()
            ),
            shown=q(shlex.join(argv)),
            argv=shlex.join(argv),
        )
        try:
            out = conn.run(script, timeout=self.command_timeout)
        except SSHError as exc:
            raise type(exc)(_mask(str(exc), env.values())) from None
        match = re.search(r"started ([0-9]+) ([0-9]+)", out)
        if match is None:
            raise SSHError(f"{host.name}: starting {version} gave no PID ({out.strip()[-200:]!r})")
        pid, start = int(match.group(1)), match.group(2)
        inst = Instance(
            instance_id=instance_id,
            version=version,
            host=host.service_address,
            port=port,
            health_path=self.health_path,
            # Not ``pid``: that field means a process on this machine, and code that
            # signals by it (crash recovery) must never hit a local process by mistake.
            pid=None,
            log_path=f"{host.name}:{log}",
            environment=environment,
            extra={"ssh_host": host.name, "remote_pid": pid, "remote_start_time": int(start)},
        )
        with self._lock:
            self._remotes[instance_id] = _Remote(inst, conn, pid, start)
        logger.info(
            "started %s on %s (pid %d, port %d), log %s", instance_id, host.name, pid, port, log
        )
        return inst

    def is_alive(self, instance: Instance) -> bool:
        """Whether the recorded process runs; True when the host cannot be asked (the
        health probe judges then), False for instances this target did not start."""
        with self._lock:
            remote = self._remotes.get(instance.instance_id)
        if remote is None or remote.stopped:
            return False
        try:
            return self._alive(remote.conn, remote.pid, int(remote.start))
        except SSHError as exc:
            logger.warning("cannot tell whether %s runs: %s", instance.instance_id, exc)
            return True

    def teardown(self, instance: Instance, grace_period: float | None = None) -> None:
        """SIGTERM the instance's process group on its host, SIGKILL after ``grace_period``
        (default: ``default_grace_period``). Idempotent; unknown instances are ignored. A
        host that cannot be reached is logged and retried by :meth:`close`."""
        grace = self.default_grace_period if grace_period is None else max(0.0, grace_period)
        with self._lock:
            remote = self._remotes.get(instance.instance_id)
            if remote is None or remote.stopped:
                return
            remote.stopped = True
        try:
            self._stop(remote.conn, remote.pid, int(remote.start), grace, instance.instance_id)
        except SSHError as exc:
            remote.stopped = False
            logger.error("could not stop %s: %s", instance.instance_id, exc)

    def stop_recorded(self, state: Mapping[str, Any], grace_period: float) -> bool | None:
        """Stop an instance that another process started with this kind of target, by its
        record (``extra``: ``ssh_host``, ``remote_pid``, ``remote_start_time``): over a
        connection to that host as configured here, the recorded process only if its
        start time still matches. Raises :class:`SSHError` when the host is not among
        this target's or cannot be reached; None for a record of another kind."""
        found = self._recorded(state)
        if found is None:
            return None
        conn, pid, start = found
        grace = max(0.0, float(grace_period))
        self._stop(conn, pid, start, grace, str(state.get("instance_id") or pid))
        return True

    def is_alive_recorded(self, state: Mapping[str, Any]) -> bool | None:
        """Whether the recorded remote process runs; None when the record is of another
        kind, names a host not configured here, or the host does not answer."""
        try:
            found = self._recorded(state)
            return None if found is None else self._alive(*found)
        except SSHError as exc:
            logger.warning("cannot tell whether %s runs: %s", state.get("instance_id"), exc)
            return None

    def _recorded(self, state: Mapping[str, Any]) -> tuple[SSHConnection, int, int] | None:
        extra = state.get("extra")
        if not isinstance(extra, Mapping):
            return None
        name, pid, start = (extra.get(k) for k in ("ssh_host", "remote_pid", "remote_start_time"))
        if not (isinstance(name, str) and _is_int(pid) and _is_int(start)):
            return None
        conn = self._conns.get(name)
        if conn is None:
            raise SSHError(
                f"{name} is not one of this target's hosts {sorted(self._conns)}; stop "
                f"process {pid} there by hand or add the host back"
            )
        return conn, pid, start

    def _alive(self, conn: SSHConnection, pid: int, start: int) -> bool:
        script = _ALIVE_FN + f"if alive {pid} {start}; then echo yes; else echo no; fi\n"
        out = self._shells[conn.host.name].run(script, timeout=self.command_timeout)
        return out.strip().endswith("yes")

    def _stop(self, conn: SSHConnection, pid: int, start: int, grace: float, name: str) -> None:
        """The recorded process group: SIGTERM, SIGKILL after ``grace``; SSHError if the
        host cannot be asked."""
        ticks = max(1, round(grace * 10))
        script = _STOP % {"pid": pid, "start": start, "ticks": ticks}
        out = conn.run(script, timeout=grace + self.command_timeout)
        if "killed" in out:
            logger.warning("%s ignored SIGTERM for %.1fs: killed", name, grace)
        logger.info("stopped %s on %s", name, conn.host.name)

    def instances(self) -> list[str]:
        """Ids of the instances started and not yet torn down."""
        with self._lock:
            return [k for k, r in self._remotes.items() if not r.stopped]

    def close(self, grace_period: float | None = None) -> None:
        """Stop every instance this target started (in parallel), then the connections."""
        with self._lock:
            running = [r.instance for r in self._remotes.values() if not r.stopped]
        threads = [
            threading.Thread(target=self.teardown, args=(i, grace_period), daemon=True)
            for i in running
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for shell in self._shells.values():
            shell.close()
        for conn in self._conns.values():
            conn.close()
        shutil.rmtree(self._control_dir, ignore_errors=True)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# The longest temporary folder the control sockets may live under: a unix socket's path
# holds at most 107 bytes, and ours is the folder plus 36, to which ssh adds 17 while binding.
_MAX_TMP = 50


def _control_dir() -> str:
    """A private folder for the ssh control sockets: under TMPDIR, or ``/tmp`` when TMPDIR's
    path is so long (a CI runner's, a test's) that every connection would fail to bind."""
    base = tempfile.gettempdir()
    if len(base) > _MAX_TMP and os.access("/tmp", os.W_OK):
        base = "/tmp"
    return tempfile.mkdtemp(prefix="cs-ssh-", dir=base)


def _mask(text: str, secrets: Any) -> str:
    return redact_text(text, [str(v) for v in secrets if v and len(str(v)) > 3])
