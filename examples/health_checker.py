"""Spec: Components / Health Checker."""

from crackseg.utils.deployment.health_monitoring import DefaultHealthChecker

checker = DefaultHealthChecker()

# Check health
result = checker.check_health("http://localhost:8080/health")
if result.success:
    print(f"Healthy - Response time: {result.response_time_ms}ms")
else:
    print(f"Unhealthy - Error: {result.error_message}")

# Wait for healthy
if checker.wait_for_healthy("http://localhost:8080/health", max_wait=300):
    print("Service is healthy")
else:
    print("Service failed to become healthy")
