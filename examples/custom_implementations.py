"""Spec: Components / Custom Implementations."""

from crackseg.utils.deployment.health_monitoring import (
    HealthChecker, ResourceMonitor, HealthCheckResult, ResourceMetrics
)
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor  # setup


class CustomHealthChecker(HealthChecker):
    def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
        # Custom health check implementation
        pass  # type: ignore[return-value]

    def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
        # Custom wait implementation
        pass  # type: ignore[return-value]


class CustomResourceMonitor(ResourceMonitor):
    def get_system_metrics(self) -> ResourceMetrics:
        # Custom system metrics implementation
        pass  # type: ignore[return-value]

    def get_process_metrics(self, process_name: str) -> ResourceMetrics:
        # Custom process metrics implementation
        pass  # type: ignore[return-value]


# Use custom implementations
monitor = DeploymentHealthMonitor(
    health_checker=CustomHealthChecker(),
    resource_monitor=CustomResourceMonitor(),
)
print(f"custom monitor ready: {type(monitor.health_checker).__name__}")
