"""Spec: Quick Start / Standalone Health Monitor."""

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor

# Create standalone monitor
monitor = DeploymentHealthMonitor()

# Add multiple deployments
monitor.add_deployment_monitoring(
    deployment_id="web-service",
    health_check_url="http://localhost:8080/health",
    process_name="web-service",
)

monitor.add_deployment_monitoring(
    deployment_id="api-service",
    health_check_url="http://localhost:8081/health",
    process_name="api-service",
)

# Start monitoring
monitor.start_monitoring()

# Get all statuses
all_statuses = monitor.get_all_deployment_statuses()
for deployment_id, status in all_statuses.items():
    print(f"{deployment_id}: {status['health_status']}")

# setup: let the first checks land, show them, and stop cleanly
monitor.wait_for_checks("web-service", 1)
monitor.wait_for_checks("api-service", 1)
for deployment_id, status in monitor.get_all_deployment_statuses().items():
    print(f"{deployment_id}: {status['health_status']}")
monitor.stop_monitoring()
