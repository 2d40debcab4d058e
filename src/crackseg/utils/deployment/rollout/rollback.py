"""The way back: put the stable version in front of users again, from what is observed.

Every strategy's :meth:`~.strategies.base.Strategy.rollback` defaults to
:func:`restore_stable`; the orchestrator calls it on any exception of a rollout.
"""

from __future__ import annotations

from crackseg.utils.deployment.rollout.context import RolloutContext, replica_kwargs
from crackseg.utils.deployment.rollout.targets.base import Instance
from crackseg.utils.deployment.rollout.watch import wait_healthy

__all__ = ["restore_stable"]


def restore_stable(ctx: RolloutContext) -> bool:
    """Put all traffic back on the stable version and stop the new one.

    Works from observed state: stable instances that no longer run or fail a probe
    (retired by a rolling or recreate step, stopped after ``keep_old_seconds``, dead) are
    started again from the stable release and gated first. Returns True when the stable
    version serves again (or there was none and the new one is stopped). When the stable
    version cannot be restored, a new version that already serves is left serving.
    """
    ctx.rolling_back = True
    stable = ctx.stable
    if stable is None or not ctx.stable_count:
        ctx.stop(ctx.new_instances)
        return True
    try:
        alive = []
        for inst in ctx.stable_alive():
            if ctx.probe(inst, stable.launcher).success:
                alive.append(inst)
            else:
                stable.launcher.stop(inst, ctx.config.grace_period)
        restarted: list[Instance] = []
        for n in range(ctx.stable_count - len(alive)):
            extra = replica_kwargs(n, ctx.stable_count)
            restarted.append(stable.launcher.start(stable.config, environment=stable.slot, **extra))
        if restarted and not wait_healthy(ctx, restarted, stable.launcher).passed:
            ctx.stop(restarted, stable.launcher)
            restarted = []
        serving = alive + restarted
        if serving:
            ctx.route([(i, 1) for i in serving])
            stable.instances = serving
    except Exception as exc:
        ctx.note("rollback_error", error=f"{type(exc).__name__}: {exc}")
        serving = []
    if not serving:
        routed = {b.address for b in ctx.router.current()}
        keep = [i for i in ctx.new_instances if i.address in routed]
        ctx.note("rollback_incomplete", kept_serving=[i.address for i in keep])
        ctx.stop([i for i in ctx.new_instances if i not in keep])
        return False
    if len(serving) < ctx.stable_count:
        ctx.note("rollback_degraded", serving=len(serving), wanted=ctx.stable_count)
    ctx.stop(ctx.new_instances)
    return True
