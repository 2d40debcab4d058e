"""Deployment health monitoring and safe rollouts for CrackSeg services.

Public faces: :mod:`.health_monitoring` (checks, resource metrics, alerts, the monitor)
and :mod:`.orchestration` (strategies, routers, rollbacks). Everything else is private.
"""
