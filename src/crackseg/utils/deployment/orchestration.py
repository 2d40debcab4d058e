"""Deployment orchestration: the public face of rollouts (the spec imports it; it only re-exports).

:class:`DeploymentOrchestrator` deploys a version with a strategy (blue-green, canary,
rolling, recreate), gates it on health and traffic, moves real traffic through a
:class:`~.rollout.routers.base.TrafficRouter`, rolls back by itself when a gate fails, and hands
every successful deployment to the :class:`~.health_monitoring.DeploymentHealthMonitor`.

>>> orchestrator = DeploymentOrchestrator(target=ProcessTarget.for_sample_service())
>>> config = DeploymentConfig("crackseg-model", "production", version="v2", bake_seconds=5)
>>> result = orchestrator.deploy_with_strategy(config, DeploymentStrategy.BLUE_GREEN)
>>> result.success, orchestrator.get_deployment_status(result.deployment_id).state
(True, 'success')

Where new versions come from: either a *target object* (``deploy``/``teardown``, e.g.
:class:`~.rollout.targets.process.ProcessTarget`), given to the constructor or as
``deployment_func`` — then the orchestrator also stops old versions — or a plain
``deployment_func(config, **kwargs)`` as in the spec, called with the slot it should
fill: ``environment="blue"``/``"green"`` (blue-green), ``environment="canary"`` and
``traffic_percentage`` (canary), ``replica_index`` and ``total_replicas`` (rolling), plus
the extra keyword arguments of :meth:`DeploymentOrchestrator.deploy_with_strategy`. It
returns a :class:`DeploymentResult`, a dict or a URL saying where the version runs; with a
plain function, stopping old versions is the user's job.

Traffic moves through a :class:`TrafficRouter` (:class:`NginxRouter`, or
:class:`CallbackRouter` over your own load balancer); versions run on a
:class:`DeploymentTarget` (:class:`ProcessTarget` here, :class:`SSHTarget` on
:class:`SSHHost` machines).

The canary judge is public too: :class:`CanaryJudge` takes :class:`ArmCounts` per look (a
test, a notebook or another router can feed it) and answers a :class:`Judgement` with its
:class:`Evidence`; :class:`JudgeConfig` holds its levels. ``DeploymentConfig(judge=...)``
sets them for a rollout, ``DeploymentConfig(load=LoadSpec(...))`` sends synthetic load.
"""

from __future__ import annotations

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.channels.log import LoggingAlertHandler
from crackseg.utils.deployment.models import DeploymentMetadata, DeploymentState, DeploymentStrategy
from crackseg.utils.deployment.rollout.analysis import PerformanceMonitor, PerformanceSnapshot
from crackseg.utils.deployment.rollout.config import DeploymentConfig, DeploymentResult
from crackseg.utils.deployment.rollout.context import DeploymentAborted
from crackseg.utils.deployment.rollout.gate import GateResult, Verdict
from crackseg.utils.deployment.rollout.judge import (
    ArmCounts,
    CanaryJudge,
    Evidence,
    JudgeConfig,
    Judgement,
)
from crackseg.utils.deployment.rollout.load import LoadSpec
from crackseg.utils.deployment.rollout.orchestrator import DeploymentOrchestrator
from crackseg.utils.deployment.rollout.routers.base import TrafficRouter
from crackseg.utils.deployment.rollout.routers.callback import CallbackRouter
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.base import DeploymentTarget
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
from crackseg.utils.deployment.rollout.targets.ssh import SSHTarget
from crackseg.utils.deployment.rollout.targets.ssh_connection import SSHHost

__all__ = [
    "AlertHandler",
    "ArmCounts",
    "CallbackRouter",
    "CanaryJudge",
    "DeploymentAborted",
    "DeploymentConfig",
    "DeploymentMetadata",
    "DeploymentOrchestrator",
    "DeploymentResult",
    "DeploymentState",
    "DeploymentStrategy",
    "DeploymentTarget",
    "Evidence",
    "GateResult",
    "JudgeConfig",
    "Judgement",
    "LoadSpec",
    "LoggingAlertHandler",
    "NginxRouter",
    "PerformanceMonitor",
    "PerformanceSnapshot",
    "ProcessTarget",
    "SSHHost",
    "SSHTarget",
    "TrafficRouter",
    "Verdict",
]
