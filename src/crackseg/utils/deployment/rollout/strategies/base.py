"""The strategy interface.

A strategy is an ordered list of steps over a :class:`~..context.RolloutContext`; any step
may raise, and :meth:`Strategy.rollback` then restores the stable version from what it
observes (which old instances still run) rather than from what the strategy believed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from crackseg.utils.deployment.rollout.context import RolloutContext
from crackseg.utils.deployment.rollout.rollback import restore_stable
from crackseg.utils.deployment.rollout.targets.base import Instance

__all__ = ["Strategy"]


class Strategy(ABC):
    """One way to replace the stable version. ``run`` returns the instances now serving;
    on any exception the orchestrator calls ``rollback``."""

    name: str = ""

    @abstractmethod
    def run(self, ctx: RolloutContext) -> list[Instance]: ...

    def rollback(self, ctx: RolloutContext) -> bool:
        """Undo this strategy's steps; the default, :func:`~..rollback.restore_stable`, fits
        them all."""
        return restore_stable(ctx)
