"""Recreate: stop the old version, start the new one, gate it. Downtime by design."""

from __future__ import annotations

from crackseg.utils.deployment.models import DeploymentState
from crackseg.utils.deployment.rollout.context import RolloutContext, replica_kwargs
from crackseg.utils.deployment.rollout.strategies.base import Strategy
from crackseg.utils.deployment.rollout.targets.base import Instance
from crackseg.utils.deployment.rollout.watch import observe, wait_healthy

__all__ = ["RecreateStrategy"]


class RecreateStrategy(Strategy):
    """Stop every stable instance, start ``replicas`` new ones, gate, route, bake.

    The deployment function is called with ``environment=<target_environment>`` (plus
    ``replica_index``/``total_replicas`` when ``replicas > 1``). A failed gate starts the
    stable version again.
    """

    name = "recreate"

    def run(self, ctx: RolloutContext) -> list[Instance]:
        cfg = ctx.config
        ctx.slot = cfg.target_environment
        old = ctx.stable_alive()
        if old:
            ctx.set_state(DeploymentState.IN_PROGRESS, f"stopping {len(old)} old instance(s)")
            ctx.retire(old)
        ctx.set_state(DeploymentState.IN_PROGRESS, f"starting {cfg.version}")
        new = [ctx.launch(ctx.slot, **replica_kwargs(i, cfg.replicas)) for i in range(cfg.replicas)]
        ctx.set_state(DeploymentState.HEALTH_CHECKING, "waiting for the new version to be healthy")
        ctx.require(wait_healthy(ctx, new), "health")
        ctx.route([(i, 1) for i in new])
        ctx.set_state(DeploymentState.HEALTH_CHECKING, f"bake window of {cfg.bake_seconds}s")
        ctx.require(observe(ctx, new, [], cfg.bake_seconds, "bake"), "bake")
        return new
