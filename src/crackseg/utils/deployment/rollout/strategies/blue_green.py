"""Blue-green: start the new version in the idle slot, gate it, switch all traffic, bake.

The old slot keeps running after success (the orchestrator stops it ``keep_old_seconds``
later), so a rollback is one router change; meanwhile a router with backups (nginx) holds it
as the new slot's backup, so an idempotent request the new version fails is served by the
old one, even before a gate notices.
"""

from __future__ import annotations

import time

from crackseg.utils.deployment.models import DeploymentState
from crackseg.utils.deployment.rollout.context import RolloutContext, replica_kwargs
from crackseg.utils.deployment.rollout.strategies.base import Strategy
from crackseg.utils.deployment.rollout.targets.base import Instance
from crackseg.utils.deployment.rollout.watch import observe, wait_healthy

__all__ = ["BlueGreenStrategy"]


class BlueGreenStrategy(Strategy):
    """Idle slot -> health gate -> switch -> bake window.

    The deployment function is called with ``environment="blue"`` or ``"green"`` (the
    slot the stable version does not use), plus ``replica_index``/``total_replicas``
    when ``replicas > 1``.
    """

    name = "blue_green"

    def run(self, ctx: RolloutContext) -> list[Instance]:
        cfg = ctx.config
        ctx.slot = "green" if ctx.stable is not None and ctx.stable.slot == "blue" else "blue"
        ctx.set_state(DeploymentState.IN_PROGRESS, f"starting {cfg.version} in the {ctx.slot} slot")
        new = [ctx.launch(ctx.slot, **replica_kwargs(i, cfg.replicas)) for i in range(cfg.replicas)]
        ctx.set_state(DeploymentState.HEALTH_CHECKING, "waiting for the new slot to be healthy")
        ctx.require(wait_healthy(ctx, new), "health")
        ctx.set_state(DeploymentState.IN_PROGRESS, f"switching traffic to the {ctx.slot} slot")
        ctx.route([(i, 1) for i in new], backups=ctx.stable_alive())
        ctx.metadata.extra["switched_at"] = time.time()
        ctx.set_state(DeploymentState.HEALTH_CHECKING, f"bake window of {cfg.bake_seconds}s")
        ctx.require(observe(ctx, new, [], cfg.bake_seconds, "bake"), "bake")
        return new
