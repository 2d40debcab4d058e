"""What a ``deploy`` section describes: the target (local processes, or SSH hosts) and the
router (an nginx the service starts, or none)."""

from __future__ import annotations

from pathlib import Path

from crackseg.utils.deployment.rollout.routers.base import TrafficRouter
from crackseg.utils.deployment.rollout.targets.base import DeploymentTarget
from crackseg.utils.deployment.service.config import DeployConfig

__all__ = ["build_router", "build_target"]


def build_target(deploy: DeployConfig) -> DeploymentTarget:
    """A :class:`ProcessTarget`, or an :class:`SSHTarget` when ``deploy.hosts`` is set."""
    t = deploy.target
    if deploy.hosts:
        from crackseg.utils.deployment.rollout.targets.ssh import SSHTarget

        return SSHTarget(
            t.command, [h.ssh_host() for h in deploy.hosts], env=t.env, cwd=t.cwd,
            log_dir=t.log_dir or "/tmp/crackseg-target", health_path=t.health_path,
            default_grace_period=t.grace_period, version_args=t.version_args,
        )  # fmt: skip
    from crackseg.utils.deployment.rollout.targets.process import ProcessTarget

    return ProcessTarget(
        t.command, env=t.env, cwd=t.cwd, log_dir=t.log_dir, host=t.host,
        health_path=t.health_path, default_grace_period=t.grace_period,
        version_args=t.version_args,
    )  # fmt: skip


def build_router(deploy: DeployConfig, workdir: Path) -> TrafficRouter | None:
    """The :class:`NginxRouter` of ``deploy.router`` (its files in ``router.workdir``, else
    ``workdir``), or None for ``type: none``. ``mode: include`` writes into the folder the
    host's nginx includes and reloads that nginx (see :mod:`.config_router`)."""
    r = deploy.router
    if r.type != "nginx":
        return None
    from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter

    include = r.mode == "include"
    return NginxRouter(
        r.listen_port, listen_host=r.listen_host, workdir=r.workdir or workdir,
        owns_process=not include, server_snippet=include,
        main_config=r.main_config if include else None,
        listen_tls=r.listen_tls.tls_listen() if r.listen_tls is not None else None,
    )  # fmt: skip
