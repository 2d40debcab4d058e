"""Where new versions come from: a target object or a plain deployment function.

:class:`TargetLauncher` wraps anything with ``deploy``/``teardown`` (a
:class:`~.targets.base.DeploymentTarget`); :class:`FunctionLauncher` wraps the spec's
``deployment_func(config, **kwargs)``.
"""

from __future__ import annotations

import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from crackseg.utils.deployment.errors import DeploymentError
from crackseg.utils.deployment.rollout.config import DeploymentConfig, DeploymentResult
from crackseg.utils.deployment.rollout.targets.base import DeploymentTarget, Instance

__all__ = [
    "DeployFunc",
    "FunctionLauncher",
    "Launcher",
    "TargetLauncher",
    "base_url",
    "describe",
    "health_url",
    "instance_from",
    "launcher_for",
]


DeployFunc = Callable[..., Any]


class Launcher(ABC):
    """Starts and stops instances of a version for a strategy."""

    @abstractmethod
    def start(self, config: DeploymentConfig, *, environment: str, **slot: Any) -> Instance: ...

    @abstractmethod
    def stop(self, instance: Instance, grace_period: float) -> None: ...

    def is_alive(self, instance: Instance) -> bool:
        return True


class TargetLauncher(Launcher):
    """A :class:`DeploymentTarget` (or any object with ``deploy`` and ``teardown``)."""

    def __init__(self, target: DeploymentTarget | Any, extra: dict[str, Any] | None = None) -> None:
        self.target = target
        self.extra = dict(extra or {})

    def start(self, config: DeploymentConfig, *, environment: str, **slot: Any) -> Instance:
        inst = self.target.deploy(
            str(config.version), environment=environment, **slot, **self.extra
        )
        if not isinstance(inst, Instance):
            inst = instance_from(inst, config, environment)
        if config.health_check_path != "/health" and inst.health_path == "/health":
            inst.health_path = config.health_check_path
        return inst

    def stop(self, instance: Instance, grace_period: float) -> None:
        self.target.teardown(instance, grace_period)

    def is_alive(self, instance: Instance) -> bool:
        fn = getattr(self.target, "is_alive", None)
        return bool(fn(instance)) if callable(fn) else True


class FunctionLauncher(Launcher):
    """A plain ``deployment_func(config, **kwargs)``, as in the spec.

    It returns where the new version runs: a :class:`DeploymentResult`, a dict
    (``deployment_url``/``url``, ``health_check_url``, optionally ``teardown``: a callable
    the orchestrator calls to stop it), a URL string, or None (then
    ``config.health_check_url`` is used). Without a ``teardown`` callable, stopping old
    versions is the user's job.
    """

    def __init__(self, fn: DeployFunc, extra: dict[str, Any] | None = None) -> None:
        self.fn = fn
        self.extra = dict(extra or {})
        self._teardowns: dict[str, Callable[[], Any]] = {}

    def start(self, config: DeploymentConfig, *, environment: str, **slot: Any) -> Instance:
        out = self.fn(config, environment=environment, **slot, **self.extra)
        if isinstance(out, DeploymentResult) and not out.success:
            raise DeploymentError(
                f"deployment_func failed: {out.error_message or 'no reason given'}"
            )
        inst = instance_from(out, config, environment)
        if isinstance(out, dict) and callable(out.get("teardown")):
            self._teardowns[inst.instance_id] = out["teardown"]
        return inst

    def stop(self, instance: Instance, grace_period: float) -> None:
        fn = self._teardowns.pop(instance.instance_id, None)
        if fn is not None:
            fn()


_ids = iter(range(1, 1 << 62))


def instance_from(out: Any, config: DeploymentConfig, environment: str) -> Instance:
    """Read where a version runs from a deployment function's answer."""
    url: str | None = None
    health: str | None = None
    if isinstance(out, DeploymentResult):
        url, health = out.deployment_url, out.health_check_url
    elif isinstance(out, dict):
        url = out.get("deployment_url") or out.get("url")
        health = out.get("health_check_url")
    elif isinstance(out, str):
        url = out
    health = health or config.health_check_url
    url = url or health
    if not url:
        raise DeploymentError(
            "deployment_func returned no URL: return a DeploymentResult, a dict with "
            "'deployment_url', a URL string, or set DeploymentConfig.health_check_url"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None:
        raise DeploymentError(f"deployment_func returned an invalid URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    inst = Instance(
        instance_id=f"{environment or 'instance'}-{parts.hostname}-{port}-{next(_ids)}",
        version=str(config.version),
        host=parts.hostname,
        port=port,
        health_path=config.health_check_path,
        environment=environment,
        extra={"url": f"{parts.scheme}://{parts.netloc}"},
    )
    if health:
        inst.extra["health_check_url"] = health
    return inst


def health_url(inst: Instance) -> str:
    return str(inst.extra.get("health_check_url") or inst.health_check_url)


def base_url(inst: Instance) -> str:
    return str(inst.extra.get("url") or inst.url)


def describe(inst: Instance) -> dict[str, Any]:
    return {
        "instance_id": inst.instance_id,
        "version": inst.version,
        "address": inst.address,
        "pid": inst.pid,
        "environment": inst.environment,
        "log_path": inst.log_path,
    }


def launcher_for(source: Any, kwargs: dict[str, Any]) -> Launcher:
    """The launcher of a deployment function or target object (see :mod:`..orchestration`)."""
    from crackseg.utils.deployment.errors import ConfigError

    if source is None:
        raise ConfigError("deployment_func", "give a deployment function or a target object")
    if callable(getattr(source, "deploy", None)) and callable(getattr(source, "teardown", None)):
        return TargetLauncher(source, kwargs)
    if callable(source):
        return FunctionLauncher(source, kwargs)
    raise ConfigError("deployment_func", "must be callable or have deploy() and teardown()")
