"""The deployment-target interface: start one instance of a version, stop it."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from crackseg.utils.deployment.processes import host_port

__all__ = ["DeploymentTarget", "Instance", "LaunchPlan", "plan_launch", "substitute"]


@dataclass
class Instance:
    """One running copy of a version, reachable at ``host:port``."""

    instance_id: str
    version: str
    host: str
    port: int
    health_path: str = "/health"
    pid: int | None = None
    log_path: str | None = None
    environment: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def health_check_url(self) -> str:
        return f"{self.url}{self.health_path}"


class DeploymentTarget(ABC):
    """Starts and stops instances of a version.

    ``deploy`` returns once the instance's process runs (not necessarily healthy: the
    orchestrator's gate judges that). ``teardown`` stops it gracefully and is idempotent.
    """

    @abstractmethod
    def deploy(self, version: str, *, environment: str = "", **kwargs: Any) -> Instance:
        """Start one instance of ``version``; ``environment`` is a slot label (blue, canary...)."""

    @abstractmethod
    def teardown(self, instance: Instance, grace_period: float = 10.0) -> None:
        """Stop ``instance``: ask politely, then force after ``grace_period`` seconds."""

    def is_alive(self, instance: Instance) -> bool:
        """Whether the instance's process still runs (True when unknowable)."""
        return True

    # -- instances a process that died had started, known only by their record ----------
    # One optional capability: crash recovery hands a target the record of an instance
    # (``instance_state``: ``instance_id``, ``address``, ``pid`` and the instance's
    # JSON-safe ``extra``) that a process on the same store started and died with.

    def stop_recorded(self, state: Mapping[str, Any], grace_period: float) -> bool | None:
        """Stop the recorded instance as :meth:`teardown` would (never a process that
        merely reuses its id). True: it no longer runs; None: the record is not of this
        target's kind (the default), so another way must stop it. Raises
        :class:`~crackseg.utils.deployment.errors.DeploymentError` saying why when it is
        this target's but cannot be stopped (its host is unreachable...)."""
        return None

    def is_alive_recorded(self, state: Mapping[str, Any]) -> bool | None:
        """Whether the recorded instance still runs; None when this target cannot tell
        (not its kind, or its host does not answer)."""
        return None

    def close(self) -> None:
        """Stop everything this target started."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each placeholder key of ``values`` (``{port}``, ``{version}``...) replaced."""
    for key, value in values.items():
        text = text.replace(key, value)
    return text


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class LaunchPlan:
    """What a target runs for one instance: placeholders filled in, and the instance's name."""

    argv: list[str]
    values: dict[str, str]
    name: str


def plan_launch(
    command: Sequence[str],
    version_args: Iterable[str],
    extra_args: Iterable[object],
    *,
    version: str,
    environment: str,
    host: str,
    port: int,
) -> LaunchPlan:
    """The argv of ``command + version_args + extra_args`` with ``{port}``, ``{host}``,
    ``{version}`` and ``{environment}`` replaced, and a file-safe name for the instance."""
    values = {
        "{port}": str(port),
        "{host}": host,
        "{version}": version,
        "{environment}": environment,
    }
    argv = [substitute(str(a), values) for a in [*command, *version_args, *extra_args]]
    name = "-".join(p for p in (environment, version, str(port)) if p)
    return LaunchPlan(argv, values, _UNSAFE_NAME.sub("_", name))
