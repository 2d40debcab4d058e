"""Spec: Components / Resource Monitor."""

from crackseg.utils.deployment.health_monitoring import DefaultResourceMonitor

monitor = DefaultResourceMonitor()

# Get system metrics
system_metrics = monitor.get_system_metrics()
print(f"CPU: {system_metrics.cpu_usage_percent}%")
print(f"Memory: {system_metrics.memory_usage_mb}MB")
print(f"Disk: {system_metrics.disk_usage_percent}%")
print(f"Network: {system_metrics.network_io_mbps}Mbps")

# Get process metrics
process_metrics = monitor.get_process_metrics("python")
print(f"Process CPU: {process_metrics.cpu_usage_percent}%")
print(f"Process Memory: {process_metrics.memory_usage_mb}MB")
