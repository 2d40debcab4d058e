"""The deployment target a ``deploy`` section describes: local processes, or SSH hosts."""

from __future__ import annotations

from crackseg.utils.deployment.rollout.targets.base import DeploymentTarget
from crackseg.utils.deployment.service.config import DeployConfig

__all__ = ["build_target"]


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
