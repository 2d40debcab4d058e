"""Resource metrics: the :class:`ResourceMonitor` interface.

The psutil implementation is :class:`DefaultResourceMonitor` in :mod:`.psutil_monitor`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from crackseg.utils.deployment.models import ResourceMetrics

__all__ = ["ResourceMonitor"]


class ResourceMonitor(ABC):
    """Samples system and per-process resource use.

    Implementations must return at once (no sleeping inside a call): rates such as CPU %
    and network Mbps come from the difference between this sample and the previous one.
    ``get_process_metrics`` raises :class:`~...errors.ProcessNotFoundError` when no process
    matches the name.
    """

    @abstractmethod
    def get_system_metrics(self) -> ResourceMetrics:
        """Whole-machine CPU %, used memory MB, disk use % and network Mbps."""

    @abstractmethod
    def get_process_metrics(self, process_name: str) -> ResourceMetrics:
        """CPU %, resident memory MB (summed over matching processes), and system disk/net."""
