"""Rolling: replace the stable replicas a few at a time.

At most ``replicas + max_surge`` instances run and at least ``replicas - max_unavailable``
healthy ones serve at every moment: a new replica joins the router only after its health
gate, and an old one leaves the router before it is stopped.
"""

from __future__ import annotations

from crackseg.utils.deployment.errors import DeploymentError
from crackseg.utils.deployment.models import DeploymentState
from crackseg.utils.deployment.rollout.context import RolloutContext
from crackseg.utils.deployment.rollout.strategies.base import Strategy
from crackseg.utils.deployment.rollout.targets.base import Instance
from crackseg.utils.deployment.rollout.watch import observe, wait_healthy

__all__ = ["RollingStrategy"]


class RollingStrategy(Strategy):
    """Surge new replicas, gate them, drain and stop old ones, repeat.

    The deployment function is called with ``environment=<target_environment>``,
    ``replica_index`` and ``total_replicas``.
    """

    name = "rolling"

    def run(self, ctx: RolloutContext) -> list[Instance]:
        cfg = ctx.config
        n, surge, unavailable = cfg.replicas, cfg.max_surge, cfg.max_unavailable
        ctx.slot = cfg.target_environment
        old = ctx.stable_alive()
        new: list[Instance] = []
        while len(new) < n or old:
            ctx.check_abort()
            start = min(n - len(new), n + surge - len(old) - len(new))
            if start > 0:
                ctx.set_state(DeploymentState.IN_PROGRESS, f"starting {start} new replica(s)")
                batch = [
                    ctx.launch(ctx.slot, replica_index=len(new) + j, total_replicas=n)
                    for j in range(start)
                ]
                ctx.set_state(DeploymentState.HEALTH_CHECKING, f"gating {start} new replica(s)")
                ctx.require(wait_healthy(ctx, batch), "health")
                new += batch
                ctx.route([(i, 1) for i in old + new])
            stop = min(len(old), len(old) + len(new) - (n - unavailable))
            if stop > 0:
                victims, old = old[:stop], old[stop:]
                ctx.set_state(DeploymentState.IN_PROGRESS, f"retiring {stop} old replica(s)")
                ctx.route([(i, 1) for i in old + new])  # drain before stopping
                ctx.retire(victims)
            elif start <= 0:
                raise DeploymentError(
                    "rolling update cannot progress: raise max_surge or max_unavailable"
                )
        ctx.set_state(DeploymentState.HEALTH_CHECKING, f"bake window of {cfg.bake_seconds}s")
        ctx.require(observe(ctx, new, [], cfg.bake_seconds, "bake"), "bake")
        return new
