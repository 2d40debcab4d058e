"""Spec: Alert System / Custom Alert Handlers."""

from crackseg.utils.deployment.models import DeploymentMetadata  # setup
from crackseg.utils.deployment.orchestration import AlertHandler
from crackseg.utils.deployment.orchestration import DeploymentOrchestrator  # setup

orchestrator = DeploymentOrchestrator()  # setup


class CustomAlertHandler(AlertHandler):
    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs):
        # Custom alert implementation
        print(f"Alert: {alert_type} for {metadata.deployment_id}")

# Add custom handler
orchestrator.add_alert_handler(CustomAlertHandler())

# setup: a deployment whose health check fails, so the handler really receives an alert
orchestrator.add_deployment_monitoring(
    deployment_id="down-service",
    health_check_url="http://localhost:8089/health",  # nothing listens here
    check_interval=1,
    failure_threshold=1,
)
orchestrator.start_health_monitoring()
orchestrator.health_monitor.wait_for_checks("down-service", 1)
orchestrator.health_monitor.dispatcher.wait_idle(5)
orchestrator.stop_health_monitoring()
