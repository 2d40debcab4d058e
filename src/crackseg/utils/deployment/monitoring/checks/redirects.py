"""A check's way from its first answer to its last: redirects followed, or reported.

A followed redirect to another origin (scheme, host or port) carries no configured
credentials; a Location is only ever shown redacted.
"""

from __future__ import annotations

from urllib.parse import urljoin

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks._fastclient import FastClient, Target
from crackseg.utils.deployment.monitoring.checks._fastconn import FastResponse
from crackseg.utils.deployment.monitoring.checks.base import failure
from crackseg.utils.deployment.monitoring.checks.outcome import (
    answer,
    failed,
    is_redirect,
    ms_since,
)
from crackseg.utils.deployment.monitoring.checks.request import RequestPolicy
from crackseg.utils.deployment.redact import redact_text

__all__ = ["follow"]


async def follow(
    policy: RequestPolicy,
    fast: FastClient,
    target: Target | str,
    resp: FastResponse | None,
    start: float,
    deadline: float,
    timeout: float,
) -> HealthCheckResult:
    """From ``target`` (``resp``: its answer, when already in) to the check's result."""
    hops = 0
    visited: set[str] | None = None
    origin = target.origin if isinstance(target, Target) else None
    cross_origin = False
    while True:
        if isinstance(target, str):
            return failure(target, ms_since(start), error_type="invalid_url")
        if resp is None:
            try:
                resp = await fast.get(target.host, target.port, target.request,
                                      policy.body_bound, deadline, policy.tls(target))  # fmt: skip
            except Exception as exc:
                return failed(exc, timeout, target.host, start, hops, policy.plan)
        if not is_redirect(resp) or not policy.follow_redirects:
            return answer(resp, start, hops, policy.plan)
        location = resp.location
        assert location is not None
        shown = redact_text(location)  # a Location may carry ?token=...
        next_url = urljoin(target.url, location)
        if visited is None:
            visited = {target.url}
        if next_url in visited:
            return failure(
                f"redirect loop: {shown} was already visited",
                ms_since(start),
                http_status=resp.status,
                location=shown,
                redirects=hops,
                error_type="redirect_loop",
            )
        hops += 1
        if hops > policy.max_redirects:
            return failure(
                f"too many redirects (more than {policy.max_redirects})",
                ms_since(start),
                http_status=resp.status,
                location=shown,
                redirects=hops - 1,
                error_type="too_many_redirects",
            )
        visited.add(next_url)
        target = policy.target(next_url, cross_origin)
        if isinstance(target, Target) and target.origin != origin and not cross_origin:
            # Credentials were meant for the configured origin only (requests and
            # httpx drop them too); once dropped they stay dropped.
            cross_origin = True
            target = policy.target(next_url, cross_origin)
        resp = None
