"""Canary: shift traffic to the new version in weight steps, judging each step.

At every step the canary's error rate and p95 latency are judged against the config's
thresholds and against the stable version's over the same window; a failed step aborts
and rolls back, so the harm is bounded by the step's weight times its bake window.
"""

from __future__ import annotations

from crackseg.utils.deployment.models import DeploymentState
from crackseg.utils.deployment.rollout.context import RolloutContext, replica_kwargs
from crackseg.utils.deployment.rollout.strategies.base import Strategy
from crackseg.utils.deployment.rollout.targets.base import Instance
from crackseg.utils.deployment.rollout.watch import observe, wait_healthy

__all__ = ["CanaryStrategy"]


class CanaryStrategy(Strategy):
    """Canary instance(s) -> health gate -> for each weight in ``canary_steps``: route, bake, judge.

    The deployment function is called with ``environment="canary"`` and
    ``traffic_percentage`` (the first step's weight). Without a stable version there is
    nothing to compare with: all traffic goes to the new version after one bake window.
    """

    name = "canary"

    def run(self, ctx: RolloutContext) -> list[Instance]:
        cfg = ctx.config
        ctx.slot = "canary"
        stable = ctx.stable_alive()
        ctx.set_state(DeploymentState.IN_PROGRESS, f"starting canary {cfg.version}")
        first = cfg.canary_steps[0]
        new = [
            ctx.launch("canary", traffic_percentage=first, **replica_kwargs(i, cfg.replicas))
            for i in range(cfg.replicas)
        ]
        ctx.set_state(DeploymentState.HEALTH_CHECKING, "waiting for the canary to be healthy")
        ctx.require(wait_healthy(ctx, new), "health")
        steps = cfg.canary_steps if stable else [100]
        for weight in steps:
            ctx.check_abort()
            ctx.set_state(DeploymentState.IN_PROGRESS, f"canary at {weight}%")
            if weight >= 100:
                ctx.route([(i, 1) for i in new], backups=stable)
            else:
                # Integer weights whose group totals are weight : 100 - weight.
                ctx.route(
                    [(i, (100 - weight) * len(new)) for i in stable]
                    + [(i, weight * len(stable)) for i in new]
                )
            ctx.metadata.extra["canary_weight"] = weight
            ctx.set_state(DeploymentState.HEALTH_CHECKING, f"analysing canary at {weight}%")
            label = f"canary {weight}%"
            compare = stable if weight < 100 else []
            ctx.require(observe(ctx, new, compare, cfg.bake_seconds, label), label)
        return new
