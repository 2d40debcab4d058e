"""Spec: Examples / Complete Monitoring Setup.

The hosts web-frontend, api-backend and model-service are the spec's; where they do not
resolve, their checks report a DNS failure, which is the point of monitoring. The spec
monitors for 300 s; MONITOR_SECONDS shortens that (the test suite uses 3).
"""

import os  # setup

from crackseg.utils.deployment.orchestration import (
    DeploymentOrchestrator, LoggingAlertHandler
)
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor

# Initialize orchestrator
orchestrator = DeploymentOrchestrator()

# Add alert handler
orchestrator.add_alert_handler(LoggingAlertHandler())

# Configure monitoring for different services
services = [
    {
        "id": "web-frontend",
        "url": "http://web-frontend:8080/health",
        "process": "web-frontend",
        "interval": 15,
    },
    {
        "id": "api-backend",
        "url": "http://api-backend:8081/health",
        "process": "api-backend",
        "interval": 30,
    },
    {
        "id": "model-service",
        "url": "http://model-service:8082/health",
        "process": "model-service",
        "interval": 60,
    },
]

# Add all services to monitoring
for service in services:
    orchestrator.add_deployment_monitoring(
        deployment_id=service["id"],
        health_check_url=service["url"],
        process_name=service["process"],
        check_interval=service["interval"],
    )

# Start monitoring
orchestrator.start_health_monitoring()

# Monitor for a period
import time
time.sleep(float(os.environ.get("MONITOR_SECONDS", 300)))  # Monitor for 5 minutes

# Get status report
all_statuses = orchestrator.get_all_health_statuses()
for deployment_id, status in all_statuses.items():
    print(f"{deployment_id}: {status['health_status']}")

# Stop monitoring
orchestrator.stop_health_monitoring()
