"""Local processes as a deployment target: one process (group) per instance, on a free port."""

from __future__ import annotations

import itertools
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crackseg.utils.deployment.errors import ConfigProblems, DeploymentError
from crackseg.utils.deployment.processes import check_host, free_port, signal_group
from crackseg.utils.deployment.rollout.targets.base import (
    DeploymentTarget,
    Instance,
    plan_launch,
    substitute,
)

__all__ = ["ProcessTarget"]

logger = logging.getLogger(__name__)

_SAMPLE_SERVICE_MODULE = "crackseg.utils.deployment.service.sample_service"


@dataclass
class _Child:
    popen: subprocess.Popen[bytes]
    log_file: Any
    stopped: bool = False


class ProcessTarget(DeploymentTarget):
    """Starts each instance as a local process on a free port, in its own process group.

    ``command`` is an argument list (or a shell-like string, split with :func:`shlex.split`);
    in each argument and in each ``env`` value the placeholders ``{port}``, ``{host}``,
    ``{version}`` and ``{environment}`` are replaced (other braces are left alone). The child's
    environment is this process's environment plus ``env``, with ``PYTHONUNBUFFERED=1`` unless set.
    Its stdout and stderr go to ``<log_dir>/<instance_id>.log`` (``log_dir`` defaults to a new
    temporary folder). ``version_args`` appends extra arguments for given versions (handy to
    start a faulty v3), and ``deploy(..., extra_args=[...], env={...}, port=N)`` does the same
    per call.

    ``deploy`` returns once the process is started (health is the caller's gate); it raises
    :class:`DeploymentError` when the program cannot be started. ``teardown`` sends SIGTERM to the instance's
    process group, SIGKILL after the grace period, reaps it and is idempotent. Thread-safe.
    """

    def __init__(
        self,
        command: Sequence[str] | str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        health_path: str = "/health",
        default_grace_period: float = 10.0,
        version_args: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        found = ConfigProblems()  # every problem in one error
        if not argv:
            found.add("command", "must name a program to run")
        found.positive("default_grace_period", default_grace_period, allow_zero=True)
        if not health_path.startswith("/"):
            found.add("health_path", f"must start with '/', got {health_path!r}")
        with found.check():  # the router's backend address: refused now, not at the switch
            host = check_host("host", host)
        found.raise_any()
        self.command: list[str] = argv
        self.env: dict[str, str] = dict(env or {})
        self.cwd = None if cwd is None else str(cwd)
        self._log_dir = None if log_dir is None else Path(log_dir)
        self.host = host
        self.health_path = health_path
        self.default_grace_period = float(default_grace_period)
        self.version_args: dict[str, list[str]] = {
            k: list(v) for k, v in (version_args or {}).items()
        }
        self._children: dict[str, _Child] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    @classmethod
    def for_sample_service(
        cls,
        *flags: str,
        python: str = sys.executable,
        **kwargs: Any,
    ) -> ProcessTarget:
        """A target running the bundled sample service; ``flags`` are its knobs for every version
        (e.g. ``"--latency-ms", "5"``); pass ``version_args={"v3": ["--fail-health"]}`` for one."""
        command = [python, "-m", _SAMPLE_SERVICE_MODULE, "--host", "{host}", "--port", "{port}"]
        command += ["--version", "{version}", *flags]
        return cls(command, **kwargs)

    @property
    def log_dir(self) -> Path:
        """Where instance logs go (created on first use)."""
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="crackseg-target-"))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        return self._log_dir

    def deploy(self, version: str, *, environment: str = "", **kwargs: Any) -> Instance:
        """Start one instance of ``version``.

        Keyword arguments: ``extra_args`` (list of str, appended to the command), ``env``
        (mapping, merged over the target's), ``port`` (int, instead of a free one). Others are
        ignored so that orchestrators may pass their own context.
        """
        port = int(kwargs.get("port") or free_port(self.host))
        plan = plan_launch(
            self.command,
            self.version_args.get(version, ()),
            kwargs.get("extra_args") or (),
            version=version,
            environment=environment,
            host=self.host,
            port=port,
        )
        argv, values = plan.argv, plan.values
        child_env = dict(os.environ)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        for key, value in {**self.env, **dict(kwargs.get("env") or {})}.items():
            child_env[key] = substitute(str(value), values)

        instance_id = f"{plan.name}-{next(self._counter)}"
        log_path = self.log_dir / f"{instance_id}.log"
        log_file = open(log_path, "ab", buffering=0)  # noqa: SIM115 - owned by the child record
        log_file.write(
            f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {shlex.join(argv)}\n".encode()
        )
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=child_env,
                start_new_session=True,  # its own process group: teardown signals the whole tree
            )
        except OSError as exc:
            log_file.close()
            raise DeploymentError(f"cannot start {argv[0]!r} for {version}: {exc}") from exc
        with self._lock:
            self._children[instance_id] = _Child(popen=popen, log_file=log_file)
        logger.info("started %s (pid %d, port %d), log %s", instance_id, popen.pid, port, log_path)
        return Instance(
            instance_id=instance_id,
            version=version,
            host=self.host,
            port=port,
            health_path=self.health_path,
            pid=popen.pid,
            log_path=str(log_path),
            environment=environment,
        )

    def is_alive(self, instance: Instance) -> bool:
        """Whether the instance's process runs; False for instances this target did not start."""
        with self._lock:
            child = self._children.get(instance.instance_id)
        return child is not None and child.popen.poll() is None

    def returncode(self, instance: Instance) -> int | None:
        """The exit status once the process ended (negative = killed by that signal), else None."""
        with self._lock:
            child = self._children.get(instance.instance_id)
        return None if child is None else child.popen.poll()

    def teardown(self, instance: Instance, grace_period: float | None = None) -> None:
        """SIGTERM the instance's process group, SIGKILL it after ``grace_period`` seconds
        (default: ``default_grace_period``), reap it. Idempotent; unknown instances are ignored."""
        grace = self.default_grace_period if grace_period is None else max(0.0, grace_period)
        with self._lock:
            child = self._children.get(instance.instance_id)
            if child is None or child.stopped:
                return
            child.stopped = True
        popen = child.popen
        pgid = popen.pid  # start_new_session made the child its group leader
        if popen.poll() is None:
            signal_group(pgid, signal.SIGTERM)
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s ignored SIGTERM for %.1fs; sending SIGKILL", instance.instance_id, grace
                )
                signal_group(pgid, signal.SIGKILL)
                popen.wait()
        # Leftover members of the group (the leader is reaped, so the id cannot be reused
        # while they exist) would otherwise outlive the instance.
        signal_group(pgid, signal.SIGKILL)
        child.log_file.close()
        logger.info("stopped %s (exit status %s)", instance.instance_id, popen.returncode)

    def instances(self) -> list[str]:
        """Ids of the instances started and not yet torn down."""
        with self._lock:
            return [k for k, c in self._children.items() if not c.stopped]

    def close(self, grace_period: float | None = None) -> None:
        """Tear down every instance this target started (in parallel, each with its grace)."""
        with self._lock:
            ids = [k for k, c in self._children.items() if not c.stopped]
        threads = [
            threading.Thread(
                target=self.teardown,
                args=(Instance(instance_id=i, version="", host=self.host, port=0), grace_period),
                daemon=True,
            )
            for i in ids
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
