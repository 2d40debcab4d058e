"""Deployment strategies: one module each, registered by :class:`DeploymentStrategy`."""

from crackseg.utils.deployment.models import DeploymentStrategy
from crackseg.utils.deployment.rollout.strategies.base import Strategy
from crackseg.utils.deployment.rollout.strategies.blue_green import BlueGreenStrategy
from crackseg.utils.deployment.rollout.strategies.canary import CanaryStrategy
from crackseg.utils.deployment.rollout.strategies.recreate import RecreateStrategy
from crackseg.utils.deployment.rollout.strategies.rolling import RollingStrategy

STRATEGIES: dict[DeploymentStrategy, type[Strategy]] = {
    DeploymentStrategy.BLUE_GREEN: BlueGreenStrategy,
    DeploymentStrategy.CANARY: CanaryStrategy,
    DeploymentStrategy.ROLLING: RollingStrategy,
    DeploymentStrategy.RECREATE: RecreateStrategy,
}

__all__ = [
    "STRATEGIES",
    "BlueGreenStrategy",
    "CanaryStrategy",
    "RecreateStrategy",
    "RollingStrategy",
    "Strategy",
]
