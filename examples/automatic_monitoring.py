"""Spec: Integration with Deployment Orchestration / Automatic and Manual Health Monitoring.

A blue-green deploy of the bundled sample service: the new version is started, gated on
health, given the traffic, and monitored automatically.
"""

from crackseg.utils.deployment.orchestration import (  # setup
    DeploymentConfig,
    DeploymentOrchestrator,
    DeploymentStrategy,
    ProcessTarget,
)

orchestrator = DeploymentOrchestrator()  # setup
deployment_config = DeploymentConfig(  # setup
    "crackseg-model", "production", version="v2", bake_seconds=1
)
deploy_function = ProcessTarget.for_sample_service()  # setup: starts a real process per version

# Deploy with automatic health monitoring
result = orchestrator.deploy_with_strategy(
    config=deployment_config,
    strategy=DeploymentStrategy.BLUE_GREEN,
    deployment_func=deploy_function,
)

# Health monitoring is automatically started if health_check_url is available
if result.success and result.health_check_url:
    # Monitoring is already started
    status = orchestrator.get_deployment_health_status(result.deployment_id)
    print(f"Deployment health: {status['health_status']}")

# Start monitoring for all deployments
orchestrator.start_health_monitoring()

# Get health status of specific deployment
status = orchestrator.get_deployment_health_status(result.deployment_id)  # spec: "deployment-123"

# Get health status of all deployments
all_statuses = orchestrator.get_all_health_statuses()
print(f"monitored: {sorted(all_statuses)}")

# Stop monitoring
orchestrator.stop_health_monitoring()
orchestrator.close()  # setup: stop the sample service
deploy_function.close()  # setup
