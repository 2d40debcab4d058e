"""The public surface changes only on purpose: __all__ is pinned here."""

from __future__ import annotations

import inspect

from crackseg.utils.deployment import health_monitoring, orchestration
from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker
from crackseg.utils.deployment.monitoring.resources.base import ResourceMonitor


def test_health_monitoring_all() -> None:
    assert sorted(health_monitoring.__all__) == sorted(
        [
            "DEFAULT_THRESHOLDS",
            "AlertEvent",
            "AlertHandler",
            "DefaultHealthChecker",
            "DefaultResourceMonitor",
            "DeploymentHealthMonitor",
            "HealthCheckResult",
            "HealthChecker",
            "HealthStatus",
            "ResourceMetrics",
            "ResourceMonitor",
        ]
    )
    for name in health_monitoring.__all__:
        assert hasattr(health_monitoring, name), name


def test_orchestration_exports_the_spec_names() -> None:
    for name in (
        "DeploymentOrchestrator",
        "AlertHandler",
        "LoggingAlertHandler",
        "DeploymentStrategy",
        "DeploymentState",
        "DeploymentMetadata",
        "DeploymentConfig",
        "DeploymentResult",
        "PerformanceMonitor",
    ):
        assert name in orchestration.__all__, name
        assert hasattr(orchestration, name), name
    # defined once: the orchestrator re-exports the notifier base, it does not redefine it
    assert orchestration.AlertHandler is AlertHandler


def test_builtins_satisfy_their_interfaces() -> None:
    hm = health_monitoring
    assert issubclass(hm.DefaultHealthChecker, HealthChecker)
    assert issubclass(hm.DefaultResourceMonitor, ResourceMonitor)
    assert issubclass(orchestration.LoggingAlertHandler, AlertHandler)
    for cls in (
        hm.DefaultHealthChecker,
        hm.DefaultResourceMonitor,
        orchestration.LoggingAlertHandler,
    ):
        assert not inspect.isabstract(cls), cls


def test_spec_signatures() -> None:
    sig = inspect.signature(
        hm_add := health_monitoring.DeploymentHealthMonitor.add_deployment_monitoring
    )
    assert list(sig.parameters)[:5] == [
        "self",
        "deployment_id",
        "health_check_url",
        "process_name",
        "check_interval",
    ]
    assert sig.parameters["check_interval"].default == 30 and hm_add is not None
    check = inspect.signature(health_monitoring.DefaultHealthChecker.check_health)
    assert check.parameters["timeout"].default == 10
    wait = inspect.signature(health_monitoring.DefaultHealthChecker.wait_for_healthy)
    assert wait.parameters["max_wait"].default == 300 and wait.parameters["interval"].default == 5
