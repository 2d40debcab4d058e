"""Spec: Troubleshooting (Health Checks Failing, High Resource Usage, Monitoring Not Starting, Debug Mode)."""

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor  # setup

# Check if endpoint is accessible
import requests
response = requests.get("http://localhost:8080/health", timeout=5)
print(f"Status: {response.status_code}")
print(f"Response: {response.text}")

# Get detailed resource metrics
from crackseg.utils.deployment.health_monitoring import DefaultResourceMonitor

monitor = DefaultResourceMonitor()
metrics = monitor.get_system_metrics()

print(f"CPU: {metrics.cpu_usage_percent}%")
print(f"Memory: {metrics.memory_usage_mb}MB")
print(f"Disk: {metrics.disk_usage_percent}%")

monitor = DeploymentHealthMonitor()  # setup: the health monitor of the sections above

# Check if monitoring is active
print(f"Monitoring active: {monitor.monitoring_active}")
print(f"Monitored deployments: {len(monitor.monitored_deployments)}")

# Check for errors in logs
import logging

logging.getLogger("crackseg.utils.deployment.health_monitoring").setLevel(logging.DEBUG)

# Enable debug logging
logging.basicConfig(level=logging.DEBUG)

# Monitor with debug output
monitor = DeploymentHealthMonitor()
monitor.add_deployment_monitoring(
    deployment_id="debug-service",
    health_check_url="http://localhost:8080/health",
    check_interval=5,
)
monitor.start_monitoring()

monitor.wait_for_checks("debug-service", 1)  # setup: see one check, then stop
print(f"debug-service: {monitor.get_deployment_status('debug-service')['health_status']}")
monitor.stop_monitoring()
