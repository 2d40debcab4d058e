"""Spec: Data Export."""

import sys

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor  # setup

monitor = DeploymentHealthMonitor()  # setup
monitor.add_deployment_monitoring("deployment-123", "http://localhost:8080/health",  # setup
                                  process_name="my-service", check_interval=30)
monitor.start_monitoring()  # setup
monitor.wait_for_checks("deployment-123", 1)  # setup

from pathlib import Path

# Export monitoring data
export_path = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/monitoring_data.json")
monitor.export_monitoring_data(export_path)

monitor.stop_monitoring()  # setup
print(f"exported to {export_path}")
