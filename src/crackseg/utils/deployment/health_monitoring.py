"""Health monitoring of deployments: the public face (the spec imports it; it only re-exports).

>>> monitor = DeploymentHealthMonitor()
>>> monitor.add_deployment_monitoring("api", "http://127.0.0.1:8080/health", check_interval=10)
>>> monitor.start_monitoring()      # returns at once; checks run in a background thread
>>> monitor.get_deployment_status("api")["health_status"] in {"unknown", "healthy", "unhealthy"}
True
>>> monitor.stop_monitoring()

Its history lives in a :class:`HistoryStore`: :class:`MemoryStore` by default, or
:class:`SQLiteStore` (``DeploymentHealthMonitor(store=SQLiteStore("history.db"))``) to keep
it across restarts.
"""

from __future__ import annotations

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.errors import ConfigError, ProcessNotFoundError
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import (
    AlertEvent,
    HealthCheckResult,
    HealthStatus,
    ResourceMetrics,
)
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.resources.base import ResourceMonitor
from crackseg.utils.deployment.monitoring.resources.psutil_monitor import DefaultResourceMonitor
from crackseg.utils.deployment.monitoring.rules import DEFAULT_THRESHOLDS

__all__ = [
    "DEFAULT_THRESHOLDS",
    "AlertEvent",
    "AlertHandler",
    "ConfigError",
    "DefaultHealthChecker",
    "DefaultResourceMonitor",
    "DeploymentHealthMonitor",
    "HealthCheckResult",
    "HealthChecker",
    "HealthStatus",
    "HistoryStore",
    "MemoryStore",
    "ProcessNotFoundError",
    "ResourceMetrics",
    "ResourceMonitor",
    "SQLiteStore",
]
