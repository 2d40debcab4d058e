"""Spec: Quick Start / Basic Health Monitoring."""

from crackseg.utils.deployment.orchestration import DeploymentOrchestrator

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor


# Initialize orchestrator with health monitoring
orchestrator = DeploymentOrchestrator()

# Add deployment to monitoring
orchestrator.add_deployment_monitoring(
    deployment_id="my-deployment",
    health_check_url="http://localhost:8080/health",
    process_name="my-service",
    check_interval=30,
)

# Start monitoring
orchestrator.start_health_monitoring()

# Get health status
status = orchestrator.get_deployment_health_status("my-deployment")
print(f"Health: {status['health_status']}")

# Stop monitoring
orchestrator.stop_health_monitoring()
