"""Deployment strategies: one module each, registered by :class:`DeploymentStrategy`."""

from ..models import DeploymentStrategy
from .base import Strategy
from .blue_green import BlueGreenStrategy
from .canary import CanaryStrategy
from .recreate import RecreateStrategy
from .rolling import RollingStrategy

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
