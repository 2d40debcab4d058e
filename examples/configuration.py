"""Spec: Configuration (Alert Thresholds, Monitoring Intervals) and Best Practices."""

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.orchestration import DeploymentOrchestrator  # setup

orchestrator = DeploymentOrchestrator()  # setup

monitor = DeploymentHealthMonitor()

# Customize alert thresholds
monitor.alert_thresholds = {
    "response_time_ms": 500.0,      # Alert if response time > 500ms
    "cpu_usage_percent": 90.0,      # Alert if CPU > 90%
    "memory_usage_mb": 2048.0,      # Alert if memory > 2GB
    "error_rate_percent": 1.0,      # Alert if error rate > 1%
}

# Frequent checks for critical services
orchestrator.add_deployment_monitoring(
    deployment_id="critical-service",
    health_check_url="http://localhost:8080/health",
    check_interval=10,  # Check every 10 seconds
)

# Less frequent checks for non-critical services
orchestrator.add_deployment_monitoring(
    deployment_id="background-service",
    health_check_url="http://localhost:8081/health",
    check_interval=60,  # Check every minute
)

# For CPU-intensive services
monitor.alert_thresholds["cpu_usage_percent"] = 80.0

# For memory-intensive services
monitor.alert_thresholds["memory_usage_mb"] = 4096.0

# For network-intensive services
monitor.alert_thresholds["response_time_ms"] = 200.0

print(f"thresholds: {monitor.alert_thresholds}")
print(f"intervals: { {k: v['check_interval'] for k, v in orchestrator.health_monitor.monitored_deployments.items()} }")
