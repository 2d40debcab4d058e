"""TCP checks: a port that accepts a connection within the timeout is healthy.

For the services a model depends on that speak no HTTP (a Redis, a Postgres: the seed's
"check dependencies"). With ``tls`` set the connection shakes hands too, and the
certificate chain's earliest expiry is recorded (``details["cert_not_after"]``).
Conditions may read ``[CONNECTED]``, ``[RESPONSE_TIME]`` and ``[CERTIFICATE_EXPIRATION]``.

>>> import asyncio
>>> from crackseg.utils.deployment.monitoring.checks.plan import build_plan
>>> plan = build_plan(url="tcp://127.0.0.1:9", type="tcp")
>>> asyncio.run(TcpChecker().check(plan, 2)).error_message
'connection refused'
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import urlsplit

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.outcome import describe
from crackseg.utils.deployment.monitoring.checks.plan import (
    CheckPlan,
    judge_connected,
    transport_failed,
)
from crackseg.utils.deployment.monitoring.checks.tls import client_context, earliest_expiry

__all__ = ["TcpChecker"]

_CLOSE_WAIT_S = 1.0


class TcpChecker:
    """Connect (and, with ``tls``, shake hands) within the timeout; close at once."""

    async def check(self, plan: CheckPlan, timeout: float) -> HealthCheckResult:
        parts = urlsplit(plan.url)
        host, port = parts.hostname or "", parts.port or 0
        ctx = client_context(plan.tls) if plan.tls is not None else None
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(
                    host, port, ssl=ctx, server_hostname=host if ctx is not None else None
                )
        except (OSError, TimeoutError) as exc:
            message, kind = describe(exc, timeout, host)
            return transport_failed(plan, message, _ms(start), {"error_type": kind})
        ms = _ms(start)
        details: dict[str, Any] = {"connected": True}
        cert_left: float | None = None
        if ctx is not None:
            not_after = earliest_expiry(writer.get_extra_info("ssl_object"))
            if not_after is not None:
                details["cert_not_after"] = not_after
                cert_left = not_after - time.time()
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), _CLOSE_WAIT_S)
        return judge_connected(plan, ms, details, cert_left)

    async def aclose(self) -> None:
        """Nothing is kept between checks."""

    def release(self, plan: CheckPlan) -> None:
        """Nothing is kept for a target."""


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000.0
